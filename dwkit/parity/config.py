"""What a gate run is configured with: levels, modes, the baseline, and the thresholds file.

Thresholds are per precision, in one TOML file: the defaults ship in
dwkit/data/parity_thresholds.toml and a user file (this repository's: ci/parity.toml)
overrides them, table by table. `[longform]` overrides the greedy long-form options of the
parity runs and `[runtime.<backend>]` passes options to a backend.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from dwkit.errors import ConfigError
from dwkit.tomlfile import read_toml_file

LEVELS = ("numerics", "tokens", "transcripts")
MODES = ("short", "sequential", "chunked")
BASELINE_BACKEND = "hf"
BASELINE_PRECISION = "fp32"
THRESHOLDS_FILE = "parity_thresholds.toml"

# Threshold key -> (level, bound). "max": the measured value may not exceed it; "min": may not
# fall below it.
METRICS: dict[str, tuple[str, str]] = {
    "encoder_max_abs": ("numerics", "max"),
    "encoder_cosine_min": ("numerics", "min"),
    "logits_max_abs": ("numerics", "max"),
    "logits_cosine_min": ("numerics", "min"),
    "token_match_min": ("tokens", "min"),
    "wer_max": ("transcripts", "max"),
    "timestamp_max_abs": ("transcripts", "max"),
    "timestamp_mean_abs": ("transcripts", "max"),
}

# The long-form options of the parity runs: greedy on both sides, no fallback and no skip, and
# transformers' own algorithm (no lost-speech guard), so the two outputs differ only where the
# numerics make them differ. [longform] overrides these.
PARITY_LONGFORM: dict[str, Any] = {
    "exact_transformers": True,
    "temperatures": (0.0,),
    "compression_ratio_threshold": None,
    "logprob_threshold": None,
    "no_speech_threshold": None,
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_layer(data: dict[str, Any], origin: str) -> None:
    """Refuse unknown keys and non-numeric limits, naming the file and the key."""
    unknown = set(data) - {"thresholds", "longform", "runtime", "validation"}  # validation: dwconvert's
    if unknown:
        raise ConfigError(
            f"{origin}: unknown section(s) {sorted(unknown)}; known: thresholds, longform, runtime"
        )
    for name, table in data.get("thresholds", {}).items():
        where = f"{origin}: [thresholds.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key, value in table.items():
            if key == "precisions":
                if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                    raise ConfigError(f"{where}: precisions must be a list of names")
            elif key == "backend":
                for backend, limits in value.items():
                    _check_limits(limits, f"{where[:-1]}.backend.{backend}]")
            else:
                _check_limits({key: value}, where)


def _check_limits(limits: Any, where: str) -> None:
    if not isinstance(limits, dict):
        raise ConfigError(f"{where} must be a table")
    for key, value in limits.items():
        if key not in METRICS:
            raise ConfigError(f"{where}: unknown threshold {key!r}; known: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")


@dataclass
class ParityConfig:
    """The thresholds, long-form options and runtime options of a gate run.

    `layers` are the parsed files in order (package defaults first); `data` is their merge.
    """

    data: dict[str, Any]
    layers: list[dict[str, Any]]
    sources: list[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> ParityConfig:
        """The package defaults, overridden by `path` when given."""
        default = files("dwkit") / "data" / THRESHOLDS_FILE
        layers = [read_toml_file(default)]
        sources = [str(default)]
        if path is not None:
            path = Path(path).expanduser()
            if not path.is_file():
                raise ConfigError(f"{path}: no such thresholds file")
            layers.append(read_toml_file(path))
            sources.append(str(path))
        for layer, origin in zip(layers, sources):
            _check_layer(layer, origin)
        data: dict[str, Any] = {}
        for layer in layers:
            data = _merge(data, layer)
        config = cls(data, layers, sources)
        config.longform("sequential")  # bad [longform] keys fail now, not after the baseline ran
        return config

    def precision_table(self, precision: str) -> str:
        """Name of the thresholds table that lists `precision`; later files win."""
        owner: dict[str, str] = {}
        for layer in self.layers:
            for name, table in layer.get("thresholds", {}).items():
                for listed in table.get("precisions", []):
                    owner[listed] = name
        if precision not in owner:
            raise ConfigError(
                f"no parity thresholds for precision {precision!r} (known: {', '.join(sorted(owner))}); "
                "add it to a table's `precisions` in your thresholds file"
            )
        return owner[precision]

    def thresholds(self, backend: str, precision: str) -> tuple[str, dict[str, float]]:
        """(table name, limits) for a candidate: its precision's table + that table's backend overrides."""
        name = self.precision_table(precision)
        table = self.data["thresholds"][name]
        limits = {key: float(value) for key, value in table.items() if key in METRICS}
        limits.update({k: float(v) for k, v in table.get("backend", {}).get(backend, {}).items()})
        return name, limits

    def longform(self, mode: str):  # type: ignore[no-untyped-def]
        """LongformOptions for one parity mode (short runs the sequential engine on 30 s)."""
        from dwkit.decoding.options import DecodeOptions
        from dwkit.longform.options import LongformOptions
        from dwkit.schema import build

        settings = {**PARITY_LONGFORM, **self.data.get("longform", {})}
        settings["mode"] = "sequential" if mode == "short" else mode
        origin = f"[longform] in {self.sources[-1]}"
        return build(LongformOptions, settings, origin, nested={"decode": DecodeOptions})

    def runtime_options(self, backend: str) -> dict[str, Any]:
        return dict(self.data.get("runtime", {}).get(backend, {}))
