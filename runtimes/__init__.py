"""Backends behind one registry: `get(name)` returns the class, `load(...)` an instance.

A backend module defines one class with `from_model_dir(model_dir, config)`, `PRECISIONS`,
and a classmethod `unavailable_reason()` (None when usable here). Modules are imported only
when used, so importing dwkit never imports torch, ctranslate2, onnxruntime or whisper.cpp.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from dwkit.errors import BackendUnavailable, ModelError
from dwkit.manifest import read_manifest
from dwkit.runtimes.base import Backend, RuntimeConfig

# backend name -> (module, class, pip extra)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "hf": ("dwkit.runtimes.hf", "HFBackend", "hf"),
    "ct2": ("dwkit.runtimes.ct2", "CT2Backend", "ct2"),
    "onnx": ("dwkit.runtimes.onnx", "OnnxBackend", "onnx"),
    "trt": ("dwkit.runtimes.trt", "TrtBackend", "gpu"),
    "ggml": ("dwkit.runtimes.ggml", "GgmlBackend", "ggml"),
}


def get(name: str) -> type:
    """The backend class registered as `name`."""
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name, extra = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {name} needs {exc.name or 'its libraries'}: pip install 'dwkit[{extra}]'"
        ) from exc
    return getattr(module, class_name)


def backend_of(model_dir: str | os.PathLike[str]) -> str:
    """The backend a model directory belongs to: its manifest's format, else transformers."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory")
    manifest = read_manifest(model_dir)
    if manifest and manifest.get("format"):
        return str(manifest["format"])
    if (model_dir / "config.json").is_file():
        return "hf"
    raise ModelError(f"{model_dir}: neither a dwkit model (no dwkit.json) nor a transformers checkpoint")


def load(
    model_dir: str | os.PathLike[str],
    backend: str | None = None,
    config: RuntimeConfig | None = None,
) -> Backend:
    """Open `model_dir` with `backend` (found from the manifest when None)."""
    found = backend_of(model_dir)
    name = backend or found
    if backend and found != backend and not (found == "onnx" and backend == "trt"):
        raise ModelError(f"{model_dir}: is a {found} model, not {backend} (use --backend {found})")
    cls = get(name)
    reason = cls.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend {name}: {reason}")
    return cls.from_model_dir(Path(model_dir), config or RuntimeConfig())
