"""What a run will do, before it does it: the reference systems installed here, the
conversions the backend specs need, and every (system, mode) row in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dwkit.bench.config import BenchConfig, SystemSpec
from dwkit.bench.convert import Conversions


@dataclass
class Target:
    """One row-to-be: a system at a precision on a model directory, in one mode."""

    system: str  # "dwkit", "faster-whisper", "transformers-pipeline"
    backend: str
    precision: str
    mode: str
    model_dir: Path | None
    error: str | None = None

    @property
    def label(self) -> str:
        if self.system == "dwkit":
            return f"{self.backend} {self.precision}"
        return f"{self.system} {self.precision}"


def available_peers(config: BenchConfig) -> list[str]:
    """Reference systems installed here: faster-whisper (sequential), transformers' pipeline (chunked)."""
    import importlib.util

    if not config.peers:
        return []
    peers = []
    if "sequential" in config.modes and importlib.util.find_spec("faster_whisper") is not None:
        peers.append("faster-whisper")
    if "chunked" in config.modes and importlib.util.find_spec("transformers") is not None:
        peers.append("transformers-pipeline")
    return peers


def faster_whisper_precisions(config: BenchConfig) -> list[str]:
    """int8 (faster-whisper's usual CPU choice) plus the compute type of every ct2 spec requested."""
    found = ["int8"]
    for spec in config.backends:
        if spec.backend == "ct2" and spec.precision not in found:
            found.append(spec.precision)
    return found


def conversion_for(spec: SystemSpec) -> tuple[str, str] | None:
    """(format, precision) to convert to for `spec`; None for transformers itself.

    CTranslate2 quantises when converting and again at load time: a compute type its
    converter knows is converted to directly (its size on disk is then the real one); any
    other (int16, ...) runs from the converter's default float16 directory.
    """
    if spec.backend == "hf":
        return None
    if spec.backend == "ct2":
        from dwkit.converters import format_module

        module = format_module("ct2")
        return ("ct2", spec.precision if spec.precision in module.PRECISIONS else module.DEFAULT_PRECISION)
    if spec.backend == "trt":
        return ("onnx", spec.precision)
    return (spec.backend, spec.precision)


def wanted_conversions(config: BenchConfig, peers: list[str]) -> list[tuple[str, str]]:
    """Every (format, precision) the run needs, each once, onnx fp32 first (its export is reused)."""
    wanted = [c for c in (conversion_for(s) for s in config.backends) if c is not None]
    if "faster-whisper" in peers:
        wanted += [
            c for c in (conversion_for(SystemSpec("ct2", p)) for p in faster_whisper_precisions(config)) if c
        ]
    return sorted(set(wanted), key=lambda c: (c[0], c[1] != "fp32", c[1]))


def plan_targets(
    config: BenchConfig, model_dir: Path, conversions: Conversions, peers: list[str]
) -> list[Target]:
    """Every (system, mode) to run, mode by mode, the baseline first in each."""
    targets = []
    for mode in config.modes:
        targets += [_target("dwkit", spec, mode, model_dir, conversions) for spec in config.backends]
        if mode == "sequential" and "faster-whisper" in peers:
            targets += [
                _target("faster-whisper", SystemSpec("ct2", precision), mode, model_dir, conversions)
                for precision in faster_whisper_precisions(config)
            ]
        if mode == "chunked" and "transformers-pipeline" in peers:
            targets.append(Target("transformers-pipeline", "hf", "fp32", mode, model_dir))
    return targets


def _target(system: str, spec: SystemSpec, mode: str, model_dir: Path, conversions: Conversions) -> Target:
    """`spec` run by `system` on its converted directory (an error when the conversion failed)."""
    converted = conversion_for(spec)
    if converted is None:
        return Target(system, spec.backend, spec.precision, mode, model_dir)
    return Target(
        system,
        spec.backend,
        spec.precision,
        mode,
        conversions.dirs.get(converted),
        error=conversions.error(converted),
    )


def job_count(config: BenchConfig, peers: list[str]) -> int:
    """Progress-bar steps of a run: preparation jobs, then load/warm-up and each repeat per row."""
    runs = len(config.modes) * len(config.backends)
    if "faster-whisper" in peers:
        runs += len(faster_whisper_precisions(config))
    if "transformers-pipeline" in peers:
        runs += 1
    prepare = (
        int(bool(config.synthetic_model)) + len(wanted_conversions(config, peers)) + 2 * int(config.floor)
    )
    return prepare + runs * (config.repeat + 1)  # a run: loading and warm-up, then each repeat
