"""The one table of backends, filled from their declarations (built-in and plugins).

Built-in backends are the modules in BUILTIN, each ending with `BACKEND = BackendSpec(...)`;
plugins are entry points in the `dwkit.backends` group whose value is `module:DECLARATION`.
Every question about backends (which exist, which runs a model directory, which `auto`
prefers, whether one runs here and why not) is answered here from those declarations.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from dwkit import devices
from dwkit.errors import BackendUnavailable, ModelError
from dwkit.manifest import read_manifest
from dwkit.runtimes.base import Backend, RuntimeConfig
from dwkit.runtimes.declaration import BackendSpec

ENTRY_POINT_GROUP = "dwkit.backends"
BUILTIN = (
    "dwkit.runtimes.hf:BACKEND",
    "dwkit.runtimes.ct2:BACKEND",
    "dwkit.runtimes.onnx:BACKEND",
    "dwkit.runtimes.trt:BACKEND",
    "dwkit.runtimes.ggml:BACKEND",
    "dwkit.runtimes.openvino:BACKEND",
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registry:
    """Declarations by name, in registration order, plus plugins that failed to load."""

    specs: dict[str, BackendSpec]
    broken: dict[str, str]  # plugin name -> why it could not be loaded


def _load_declaration(value: str) -> BackendSpec:
    module_name, _, attribute = value.partition(":")
    spec = getattr(importlib.import_module(module_name), attribute or "BACKEND")
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"{value} is a {type(spec).__name__}, not a dwkit BackendSpec")
    return spec


@lru_cache(maxsize=1)
def declarations() -> Registry:
    """Read the declarations once per process (`refresh()` re-reads, e.g. after installing a plugin)."""
    specs: dict[str, BackendSpec] = {}
    broken: dict[str, str] = {}
    for value in BUILTIN:
        spec = _load_declaration(value)
        specs[spec.name] = spec
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in specs:
            if point.value not in BUILTIN:
                logger.warning("backend plugin %s (%s) ignored: the name is taken", point.name, point.value)
            continue
        try:
            spec = point.load()
            if not isinstance(spec, BackendSpec):
                raise TypeError(f"{point.value} is a {type(spec).__name__}, not a dwkit BackendSpec")
        except Exception as exc:  # a broken plugin must not break dwkit: it is listed as unusable
            broken[point.name] = f"plugin {point.value} failed to load: {type(exc).__name__}: {exc}"
            continue
        if spec.name != point.name:
            broken[point.name] = f"plugin {point.value} declares the name {spec.name!r}, not {point.name!r}"
            continue
        specs[spec.name] = spec
    return Registry(specs, broken)


def refresh() -> None:
    declarations.cache_clear()


def names() -> tuple[str, ...]:
    """Every usable declaration's name, built-in ones first."""
    return tuple(declarations().specs)


def spec(name: str) -> BackendSpec:
    """The declaration of backend `name`; a clear error for unknown or broken ones."""
    table = declarations()
    if name in table.specs:
        return table.specs[name]
    if name in table.broken:
        raise BackendUnavailable(f"backend {name}: {table.broken[name]}")
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(table.specs)}")


def formats() -> tuple[str, ...]:
    """Every model directory format some backend runs."""
    return tuple(dict.fromkeys(fmt for s in declarations().specs.values() for fmt in s.formats))


def runners_of(fmt: str) -> tuple[BackendSpec, ...]:
    """The backends that run model directories of format `fmt`, the one `auto` prefers first."""
    found = [s for s in declarations().specs.values() if fmt in s.formats]
    return tuple(sorted(found, key=lambda s: -s.auto_rank))


def default_runner(fmt: str, model_dir: str | os.PathLike[str] = "") -> BackendSpec:
    """The backend that opens a `fmt` directory when none is named: the one named like the
    format (it reads its own files, on any device), else the first that runs it."""
    runners = runners_of(fmt)
    if not runners:
        raise ModelError(f"{model_dir or fmt}: no installed backend runs {fmt} models")
    return next((s for s in runners if s.name == fmt), runners[0])


def machine_problem(name: str, device: str = "cpu") -> str | None:
    """What this machine lacks for backend `name` on `device`, found without importing any
    backend library (so validating a config stays fast): the device, then its modules."""
    s = spec(name)
    kind = "cuda" if device.startswith("cuda") else device
    if kind not in s.devices:
        if s.gpu_only:
            return f'the {name} backend runs on an NVIDIA GPU only; set device = "cuda"'
        return f"the {name} backend ({s.summary}) runs on the {', '.join(s.devices).upper()} only"
    if kind == "cuda" and not devices.nvidia_gpu_present():
        return f"device {device}: no NVIDIA GPU visible here"
    return s.missing_library()


def unavailable_reason(name: str, device: str = "cpu") -> str | None:
    """Why backend `name` cannot run on `device` here, or None when it can: the machine check,
    then the backend's own probe (its library imports; for CUDA, that it was built with it)."""
    try:
        return machine_problem(name, device) or spec(name).probe(device)
    except BackendUnavailable as exc:
        return str(exc).removeprefix(f"backend {name}: ")


def backend_of(model_dir: str | os.PathLike[str]) -> str:
    """The format of a model directory (or a single-file model such as whisper.cpp's): its
    manifest's, else that of the highest-ranked declaration that recognises its files."""
    model_dir = Path(model_dir)
    if model_dir.is_dir():
        manifest = read_manifest(model_dir)
        if manifest and manifest.get("format"):
            return str(manifest["format"])
    elif not model_dir.is_file():
        raise ModelError(f"{model_dir}: no such model directory")
    ranked = sorted(declarations().specs.values(), key=lambda s: -s.recognise_rank)
    for s in ranked:
        if s.recognise is not None and s.recognise(model_dir):
            return s.formats[0]
    if model_dir.is_file():
        raise ModelError(f"{model_dir}: is a file but no model file dwkit runs (a whisper.cpp ggml-*.bin)")
    raise ModelError(
        f"{model_dir}: neither a dwkit model (no dwkit.json) nor a transformers checkpoint, "
        "a faster-whisper / CTranslate2 directory or a whisper.cpp model file"
    )


def load(
    model_dir: str | os.PathLike[str],
    backend: str | None = None,
    config: RuntimeConfig | None = None,
) -> Backend:
    """Open `model_dir` with `backend` (found from the directory when None); a pair spec
    (`hf:bf16+ct2:int8`, runtimes/pair.py) opens the encoder and the decoder side from it."""
    from dwkit.runtimes import pair

    if pair.is_pair(backend):
        return pair.load_pair(Path(model_dir), pair.PairSpec.parse(str(backend)), config or RuntimeConfig())
    found = backend_of(model_dir)
    s = spec(backend) if backend is not None else default_runner(found, model_dir)
    config = config or RuntimeConfig()
    reason = unavailable_reason(s.name, config.device)
    if reason:
        raise BackendUnavailable(f"backend {s.name}: {reason}")
    if found not in s.formats:
        raise ModelError(f"{model_dir}: is a {found} model, not {s.name} (use --backend {found})")
    config.options = s.parse_options(config.options)
    return s.backend_class.from_model_dir(Path(model_dir), config)
