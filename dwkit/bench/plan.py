"""What a run will do, before it does it: the reference systems installed here, the
conversions the backend specs need, and every (system, mode) row in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dwkit.bench import openvino_genai
from dwkit.bench.config import DRAFT_SUFFIX, PEERS, BenchConfig, SystemSpec, device_kind
from dwkit.bench.convert import Conversions
from dwkit.runtimes.pair import SIDES, PairSpec, conversion_of, is_pair

# Backends that build their engines when they load an onnx directory (TensorRT: minutes at
# full size): their rows run last in each mode, after the peers, so a run with a --budget that
# runs out loses only them.
BUILDS_AT_LOAD = ("trt",)


@dataclass
class Target:
    """One row-to-be: a system at a precision on a model directory, in one mode."""

    system: str  # "dwkit" or a peer's name (bench.config.PEERS)
    backend: str
    precision: str
    mode: str
    model_dir: Path | None
    error: str | None = None
    draft_dir: Path | None = None  # speculative decoding with this draft model
    # A pair's converted sides (runtimes/pair.py's encoder_model / decoder_model options).
    options: dict[str, str] = field(default_factory=dict)
    skipped: bool = False  # `error` says why it cannot run on this machine (nothing was tried)

    @property
    def label(self) -> str:
        if self.system == "dwkit" and is_pair(self.backend):
            return SystemSpec(self.backend, self.precision).label
        if self.system == "dwkit":
            return f"{self.backend} {self.precision}" + (f" {DRAFT_SUFFIX}" if self.draft_dir else "")
        return f"{self.system} {self.precision}"


def available_peers(config: BenchConfig) -> list[str]:
    """The reference systems this run compares with: those `peers` asks for, installed here,
    whose mode is run; whisper.cpp only where a ggml spec is asked for, decoding freely."""
    import importlib.util

    if config.peers is False:
        return []
    names = [n for n, peer in PEERS.items() if peer.default] if config.peers is True else config.peers
    found = []
    for name in names:
        peer = PEERS[name]
        if peer.mode not in config.modes or importlib.util.find_spec(peer.module) is None:
            continue
        if device_kind(config.device) not in peer.devices:
            continue
        if peer.reads == "ggml" and config.tokens_per_window:  # whisper_full cannot be forced
            continue
        if peer_specs(name, config):
            found.append(name)
    return found


def peer_specs(name: str, config: BenchConfig) -> list[SystemSpec]:
    """The model directories (as backend specs) peer `name` runs on, one row each."""
    if PEERS[name].reads == "ct2":
        return [SystemSpec("ct2", precision) for precision in faster_whisper_precisions(config)]
    if PEERS[name].reads == "ggml":
        return [spec for spec in config.backends if spec.backend == "ggml"]
    if PEERS[name].reads == openvino_genai.FORMAT:
        return [
            SystemSpec(openvino_genai.FORMAT, precision) for precision in openvino_genai_precisions(config)
        ]
    return [SystemSpec("hf", "fp16" if device_kind(config.device) == "cuda" else "fp32")]


def faster_whisper_precisions(config: BenchConfig) -> list[str]:
    """faster-whisper's usual choice on the device (int8 on CPU, float16 on a GPU) plus the
    compute type of every ct2 spec requested."""
    found = ["float16" if device_kind(config.device) == "cuda" else "int8"]
    for spec in config.backends:
        if spec.backend == "ct2" and spec.precision not in found:
            found.append(spec.precision)
    return found


def openvino_genai_precisions(config: BenchConfig) -> list[str]:
    """int8 weights (beside faster-whisper int8), plus fp32 when an openvino fp32 spec is run."""
    found = ["int8"]
    if any(spec.backend == "openvino" and spec.precision == "fp32" for spec in config.backends):
        found.append("fp32")
    return found


def conversion_for(spec: SystemSpec) -> tuple[str, str] | None:
    """(format, precision) to convert to for a one-backend `spec`; None for transformers itself."""
    if spec.backend == openvino_genai.FORMAT:  # a peer's export, not a dwkit backend
        return (openvino_genai.FORMAT, spec.precision)
    return conversion_of(spec.backend, spec.precision)


def conversions_for(spec: SystemSpec) -> dict[str, tuple[str, str]]:
    """The conversions a system runs on, by role: "model" for one backend, "encoder" /
    "decoder" for the sides of a pair that are not the checkpoint's own format."""
    if not is_pair(spec.backend):
        found = conversion_for(spec)
        return {} if found is None else {"model": found}
    pair = PairSpec.parse(spec.backend)
    sides = {role: pair.side(role) for role in SIDES}
    found = {role: conversion_of(s.backend, s.resolved_precision()) for role, s in sides.items()}
    return {role: c for role, c in found.items() if c is not None}


def backends_of(spec: SystemSpec) -> list[str]:
    """The backends a system needs: one, or both sides of a pair."""
    return list(dict.fromkeys(backend for backend, _ in spec.sides))


def unconvertible(specs: list[SystemSpec]) -> dict[str, str]:
    """Backend -> why the conversion it runs on cannot be made here: its output format's
    libraries (the converters' own declarations), looked up without importing them."""
    from dwkit import devices
    from dwkit.converters import FORMATS

    found = {}
    for spec in specs:
        for backend, precision in spec.sides:
            fmt = (conversion_of(backend, precision) or ("", ""))[0]
            declared = FORMATS.get(fmt)
            missing = [m for m in (declared.requires if declared else ()) if not devices.module_installed(m)]
            if missing:
                found[backend] = (
                    f"converting to {fmt} needs {', '.join(missing)}: pip install 'dwkit[{declared.extra}]'"
                )
    return found


def unusable(spec: SystemSpec, unavailable: dict[str, str]) -> str | None:
    """Why `spec` cannot run here (from the run's backend probe), or None."""
    for backend in backends_of(spec):
        if backend in unavailable:
            return f"skipped: {backend} cannot run here: {unavailable[backend]}"
    return None


def wanted_conversions(
    config: BenchConfig, peers: list[str], unavailable: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """Every (format, precision) the run needs, each once, onnx fp32 first (its export is reused);
    none for systems whose backend cannot run here (`unavailable`: backend -> why)."""
    specs = config.backends + [spec for name in peers for spec in peer_specs(name, config)]
    if config.draft_spec is not None and any(s.draft for s in config.backends):
        specs.append(config.draft_spec)
    specs = [s for s in specs if unusable(s, unavailable or {}) is None]
    wanted = [c for s in specs for c in conversions_for(s).values()]
    return sorted(set(wanted), key=lambda c: (c[0], c[1] != "fp32", c[1]))


def plan_targets(
    config: BenchConfig,
    model_dir: Path,
    conversions: Conversions,
    peers: list[str],
    draft_dir: Path | None = None,
    unavailable: dict[str, str] | None = None,
) -> list[Target]:
    """Every (system, mode) to run, mode by mode, the baseline first in each; a system whose
    backend cannot run here (`unavailable`: backend -> why) is a skipped row saying why."""
    targets = []
    unavailable = unavailable or {}
    for mode in config.modes:
        in_mode = []
        for spec in config.backends:
            target = _target("dwkit", spec, mode, model_dir, conversions, unavailable)
            target.draft_dir = draft_dir if spec.draft else None
            in_mode.append(target)
        for name in peers:
            if PEERS[name].mode == mode:
                in_mode += [
                    _target(name, spec, mode, model_dir, conversions, unavailable)
                    for spec in peer_specs(name, config)
                ]
        targets += sorted(in_mode, key=lambda t: t.system == "dwkit" and t.backend in BUILDS_AT_LOAD)
    return targets


def _target(
    system: str,
    spec: SystemSpec,
    mode: str,
    model_dir: Path,
    conversions: Conversions,
    unavailable: dict[str, str],
) -> Target:
    """`spec` run by `system` on its converted directory (an error when the conversion failed);
    a pair runs from the checkpoint with its converted sides as options."""
    target = Target(system, spec.backend, spec.precision, mode, model_dir)
    skipped = unusable(spec, unavailable)
    if skipped:
        target.error, target.skipped = skipped, True
        return target
    needed = conversions_for(spec)
    for role, converted in needed.items():
        target.error = target.error or conversions.error(converted)
        found = conversions.dirs.get(converted)
        if role == "model":
            target.model_dir = found
        elif found is not None:
            target.options[f"{role}_model"] = str(found)
    return target


def job_count(config: BenchConfig, peers: list[str]) -> int:
    """Progress-bar steps of a run: preparation jobs, then load/warm-up and each repeat per row."""
    runs = len(config.modes) * len(config.backends) + sum(len(peer_specs(name, config)) for name in peers)
    prepare = (
        int(bool(config.synthetic_model))
        + int(device_kind(config.device) == "cuda")  # the backend probe
        + len(wanted_conversions(config, peers))
        + 2 * int(config.floor)
    )
    return prepare + runs * (config.repeat + 1)  # a run: loading and warm-up, then each repeat
