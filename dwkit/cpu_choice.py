"""What `backend = "auto"` runs a large transformers checkpoint on, for the CPU it runs on.

The choice is data (dwkit/data/auto_choice.toml: per kind of CPU, an ordered list of specs
with the measured reason), so a new measurement edits a table, not code paths. This module
only matches the CPU's flags to a row and the row's specs to the backends usable here.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
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
    unavailable: Callable[[str, str], str | None],
    device: str = "cpu",
    flags: frozenset[str] | None = None,
    spec_problem: Callable[[str], str | None] | None = None,
) -> CpuChoice | None:
    """The first preferred spec of this CPU's row whose backends all run on `device` here
    (`unavailable(name, device)`: why a backend cannot, or None) and that has no
    `spec_problem` (e.g. `conversion_memory_problem`); None when none can."""
    row = cpu_kind(flags)
    skipped = []
    for spec in row["prefer"]:
        names = dict.fromkeys(side.partition(":")[0] for side in spec.split("+"))
        problems = [f"{name}: {why}" for name in names if (why := unavailable(name, device))]
        if not problems and spec_problem is not None and (why := spec_problem(spec)):
            problems.append(why)
        if not problems:
            return CpuChoice(row["kind"], spec, " ".join(row["reason"].split()), tuple(skipped))
        skipped.append(f"{spec} ({'; '.join(problems)})")
    return None


def conversion_memory_problem(model_dir: Path, spec: str, available: int | None = None) -> str | None:
    """Why `spec` should not be chosen for checkpoint `model_dir` here: a side it converts on
    first use (not cached yet) has a measured peak memory (the format's
    `peak_memory_per_fp32_byte`) above this machine's available memory. A conversion killed
    for memory half-way would cost minutes and leave the user nothing; the next spec runs."""
    from dwkit.conversion_cache import conversion_dir, is_converted
    from dwkit.converters import FORMATS
    from dwkit.runtimes.pair import PairSpec, conversion_of

    pair = PairSpec.parse(spec if "+" in spec else f"{spec}+{spec}")
    for side in dict.fromkeys((pair.encoder, pair.decoder)):
        target = conversion_of(side.backend, side.resolved_precision())
        if target is None:  # runs the checkpoint itself
            continue
        fmt, precision = target
        factor = dict(FORMATS[fmt].peak_memory_per_fp32_byte).get(precision)
        if factor is None or is_converted(conversion_dir(model_dir, fmt, precision)):
            continue
        need = factor * 4 * checkpoint_parameters(model_dir)
        free = available_memory() if available is None else available
        if free is not None and need > free:
            return (
                f"its first-use conversion to {fmt} {precision} needs ~{need / 1e9:.1f} GB of RAM "
                f"(measured), {free / 1e9:.1f} GB available: convert on a larger machine "
                f"(dwconvert --to {fmt} --precision {precision}) and run that directory"
            )
    return None


def checkpoint_parameters(model_dir: Path) -> int:
    """Parameters in the checkpoint's safetensors files, from their JSON headers (no weights read)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
            total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
        except (OSError, ValueError, struct.error, KeyError, TypeError):
            continue  # unreadable: the loader reports it
    return total


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
