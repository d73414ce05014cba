"""Backends behind one registry, filled from each backend module's `BACKEND` declaration.

Read `runtimes/base.py` first (the contract a backend implements), then
`runtimes/declaration.py` (what it declares about itself) and `runtimes/registry.py` (how the
declarations, built-in and from `dwkit.backends` entry points, become every CLI choice,
config rule and default). Backend libraries are imported only when a backend is used, so
importing dwkit never imports torch, ctranslate2, onnxruntime or whisper.cpp.
"""

from __future__ import annotations

from dwkit.runtimes.base import Backend, EncoderOutput, ParityProbe, RuntimeConfig, StepBackend
from dwkit.runtimes.declaration import BackendOption, BackendSpec
from dwkit.runtimes.registry import (
    ENTRY_POINT_GROUP,
    backend_of,
    declarations,
    default_runner,
    formats,
    load,
    machine_problem,
    names,
    refresh,
    runners_of,
    spec,
    unavailable_reason,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendOption",
    "BackendSpec",
    "EncoderOutput",
    "ParityProbe",
    "RuntimeConfig",
    "StepBackend",
    "backend_of",
    "default_runner",
    "formats",
    "load",
    "machine_problem",
    "names",
    "refresh",
    "declarations",
    "runners_of",
    "spec",
    "unavailable_reason",
]
