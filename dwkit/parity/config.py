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

LEVELS = ("numerics", "tokens", "transcripts", "words")  # words: only with word timestamps on
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
    "word_match_min": ("words", "min"),
    "word_time_share_min": ("words", "min"),
}
WORDS_LEVEL = "words"  # run per mode when the parity long-form options have word_timestamps on

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
    unknown = set(data) - {
        "thresholds",
        "longform",
        "runtime",
        "words",
        "validation",
    }  # validation: dwconvert's
    if unknown:
        raise ConfigError(
            f"{origin}: unknown section(s) {sorted(unknown)}; known: thresholds, longform, runtime, words"
        )
    _check_words(data.get("words", {}), f"{origin}: [words]")
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


def _check_words(section: Any, where: str) -> None:
    if not isinstance(section, dict) or set(section) - {"tolerance_s", "limits"}:
        raise ConfigError(f"{where} takes tolerance_s and [words.limits.TABLE] tables only")
    tolerance = section.get("tolerance_s", 0.1)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ConfigError(f"{where}: tolerance_s must be a number of seconds >= 0, not {tolerance!r}")
    for name, limits in section.get("limits", {}).items():
        _check_limits(limits, f"{where[:-1]}.limits.{name}]")


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

    def mode_levels(self, mode: str) -> tuple[str, ...]:
        """The levels checked per mode: tokens, transcripts, and words where the parity runs
        time words (`[longform] word_timestamps = true`)."""
        words = (WORDS_LEVEL,) if self.longform(mode).word_timestamps else ()
        return ("tokens", "transcripts", *words)

    def words(self, table: str) -> tuple[float, dict[str, float]]:
        """(tolerance in seconds, limits) of the word level for a thresholds table:
        `[words.limits.default]`, then `[words.limits.TABLE]`, then word keys in the table itself."""
        section = self.data.get("words", {})
        tables = section.get("limits", {})
        limits = {**tables.get("default", {}), **tables.get(table, {})}
        own = self.data.get("thresholds", {}).get(table, {})
        limits.update({k: v for k, v in own.items() if METRICS.get(k, ("",))[0] == WORDS_LEVEL})
        return float(section.get("tolerance_s", 0.1)), {k: float(v) for k, v in limits.items()}

    def runtime_options(self, backend: str) -> dict[str, Any]:
        return dict(self.data.get("runtime", {}).get(backend, {}))
