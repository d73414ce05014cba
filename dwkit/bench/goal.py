"""A benchmark's goal, read from its config (`goal = "../goals/NAME.toml"` or a `[goal]`
table), and where a run stands against it.

The code knows two kinds of criteria and no particular numbers: the fastest dwkit backend
against a reference row (RTFx ratio at least `speedup_min`), and the fastest backend's
encoder time per 30 s window against the bf16 matmul floor (at most
`encoder_vs_bf16_floor_max`). A run without a goal reports none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dwkit.errors import ConfigError
from dwkit.tomlfile import read_toml_file

ROW_KEYS = ("label", "mode", "rtfx", "encoder_ms_per_window")


@dataclass(frozen=True)
class Goal:
    """What a benchmark should show; `architecture` is the config.json keys it is stated for."""

    name: str  # how the report names it, e.g. "issue 9"
    scope: str = ""  # where it applies, e.g. "on this 2-core CPU, for ... on long-form audio"
    reference: str | None = None  # label of the row the speed is compared with
    speedup_min: float | None = None
    encoder_vs_bf16_floor_max: float | None = None
    architecture_name: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.speedup_min is not None and not self.reference:
            raise ConfigError(f"goal {self.name!r}: speedup_min needs a reference (a row label)")

    @classmethod
    def load(cls, value: str | dict[str, Any], base: Path, origin: str = "[goal]") -> Goal:
        """A `[goal]` table, or the path (relative to `base`) of a TOML file holding one;
        `origin` names the table in errors."""
        if isinstance(value, str):
            path = Path(value).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise ConfigError(f"goal {value!r}: no such file {path}")
            value, origin = read_toml_file(path), str(path)
        if not isinstance(value, dict):
            raise ConfigError("goal must be a table or the path of a TOML file")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"{origin}: unknown goal keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**value)
        except TypeError as exc:
            raise ConfigError(f"{origin}: {exc}") from exc

    def statement(self) -> str:
        parts = []
        if self.speedup_min is not None:
            parts.append(
                f"at least {self.speedup_min:g}x faster (RTFx) than {self.reference} on the same audio and settings"
            )
        if self.encoder_vs_bf16_floor_max is not None:
            parts.append(
                f"with encoder time per 30 s window within {self.encoder_vs_bf16_floor_max:g}x of the bf16 floor"
            )
        scope = f"{self.scope}, " if self.scope else ""
        return f"{scope}the fastest dwkit backend should be " + ", ".join(parts)


def goal_status(result: dict[str, Any], goal: Goal | None) -> dict[str, Any] | None:
    """Where the fastest dwkit backend stands against `goal`, on the numbers of this run."""
    if goal is None:
        return None
    rows = [r for r in result["results"] if "error" not in r and r.get("rtfx")]
    dwkit_rows = [r for r in rows if r["system"] == "dwkit"]
    arch = result["model"]["architecture"]
    status: dict[str, Any] = {
        "name": goal.name,
        "statement": goal.statement(),
        "criteria": {
            "reference": goal.reference,
            "speedup_min": goal.speedup_min,
            "encoder_vs_bf16_floor_max": goal.encoder_vs_bf16_floor_max,
            "architecture_name": goal.architecture_name,
        },
        "architecture_matches": all(arch.get(k) == v for k, v in goal.architecture.items()),
    }
    if not dwkit_rows:
        status["met"] = None
        return status
    fastest = max(dwkit_rows, key=lambda r: r["rtfx"])
    status["fastest"] = {k: fastest.get(k) for k in ROW_KEYS}
    met = []
    if goal.speedup_min is not None:
        met.append(
            _speed(status, fastest, [r for r in rows if r["label"] == goal.reference], goal.speedup_min)
        )
    if goal.encoder_vs_bf16_floor_max is not None:
        met.append(
            _encoder(status, fastest, dwkit_rows, result.get("floor") or {}, goal.encoder_vs_bf16_floor_max)
        )
    status["met"] = None if None in met or not met else all(met)
    return status


def _speed(
    status: dict[str, Any], fastest: dict[str, Any], reference: list[dict[str, Any]], least: float
) -> bool | None:
    """The speed criterion (None: the reference did not run); its figures go into `status`."""
    if not reference:
        return None
    ref = reference[0]
    speedup = fastest["rtfx"] / ref["rtfx"]
    status["reference"] = {k: ref.get(k) for k in ROW_KEYS}
    status["speedup_vs_reference"] = round(speedup, 3)
    status["speedup_gap"] = round(least / speedup, 3)
    return speedup >= least


def _encoder(
    status: dict[str, Any],
    fastest: dict[str, Any],
    rows: list[dict[str, Any]],
    floor: dict[str, Any],
    most: float,
) -> bool | None:
    """The encoder criterion (None: no floor or no encoder time); its figures go into `status`."""
    floor_ms = floor.get("encoder_floor_ms_bf16")
    if not floor_ms or not fastest.get("encoder_ms_per_window"):
        return None
    ratio = fastest["encoder_ms_per_window"] / floor_ms
    status["encoder_vs_bf16_floor"] = round(ratio, 3)
    best = min((r for r in rows if r.get("encoder_ms_per_window")), key=lambda r: r["encoder_ms_per_window"])
    status["best_encoder"] = {
        "label": best["label"],
        "mode": best["mode"],
        "encoder_ms_per_window": best["encoder_ms_per_window"],
        "vs_bf16_floor": round(best["encoder_ms_per_window"] / floor_ms, 3),
    }
    return ratio <= most
