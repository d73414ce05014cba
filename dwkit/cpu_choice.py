"""What `backend = "auto"` runs a large transformers checkpoint on, for the CPU it runs on.

The choice is data (dwkit/data/auto_choice.toml: per kind of CPU, an ordered list of specs
with the measured reason), so a new measurement edits a table, not code paths. This module
only matches the CPU's flags to a row and the row's specs to the backends usable here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from dwkit import devices
from dwkit.tomlfile import read_toml_file

TABLE = "auto_choice.toml"


@dataclass(frozen=True)
class CpuChoice:
    """The spec `auto` runs on this CPU, and why (what it skipped included)."""

    kind: str  # the table's row: amx, avx512_bf16, avx2, generic
    spec: str  # BACKEND:PRECISION or ENC:PREC+DEC:PREC
    reason: str
    skipped: tuple[str, ...] = ()  # preferred specs not usable here, with why

    def explain(self) -> str:
        text = f"CPU kind {self.kind}: {self.reason}"
        return text + (f"; skipped {'; '.join(self.skipped)}" if self.skipped else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "reason": self.reason, "skipped": list(self.skipped)}


@cache
def table() -> dict[str, Any]:
    return read_toml_file(files("dwkit") / "data" / TABLE)  # type: ignore[arg-type]


def min_d_model() -> int:
    """The narrowest checkpoint the table's rows are for (smaller ones keep their own format)."""
    return int(table()["min_d_model"])


def cpu_kind(flags: frozenset[str] | None = None) -> dict[str, Any]:
    """The table's row for this CPU: the first whose flags it has all of."""
    flags = devices.cpu_flags() if flags is None else flags
    return next(row for row in table()["cpu"] if set(row["flags"]) <= flags)


def choose(
    unavailable: Callable[[str, str], str | None], device: str = "cpu", flags: frozenset[str] | None = None
) -> CpuChoice | None:
    """The first preferred spec of this CPU's row whose backends all run on `device` here
    (`unavailable(name, device)`: why a backend cannot, or None); None when none can."""
    row = cpu_kind(flags)
    skipped = []
    for spec in row["prefer"]:
        names = dict.fromkeys(side.partition(":")[0] for side in spec.split("+"))
        problems = [f"{name}: {why}" for name in names if (why := unavailable(name, device))]
        if not problems:
            return CpuChoice(row["kind"], spec, " ".join(row["reason"].split()), tuple(skipped))
        skipped.append(f"{spec} ({'; '.join(problems)})")
    return None
