"""Output formats, one module each, behind one registry (`convert`).

Each format module exposes `PRECISIONS` (its own precision names), `DEFAULT_PRECISION`
and `convert(source: Path, out_dir: Path, precision: str, *, validate: bool, overwrite: bool,
**opts) -> ConversionResult`. Modules are imported only when used, so a missing optional
library affects only its own format.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from dwkit.converters.base import ConversionResult, resolve_source
from dwkit.errors import BackendUnavailable, ConversionError

# format name -> (module, pip extra that provides its libraries)
FORMATS: dict[str, tuple[str, str]] = {
    "ct2": ("dwkit.converters.ct2", "ct2"),
    "onnx": ("dwkit.converters.onnx", "onnx"),
    "trt": ("dwkit.converters.trt", "onnx"),
    "ggml": ("dwkit.converters.ggml", "ggml"),
}


def format_module(fmt: str) -> ModuleType:
    """The module that writes `fmt`; a clear error for unknown formats or missing libraries."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    module_name, extra = FORMATS[fmt]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"--to {fmt} needs {exc.name or 'its libraries'}: pip install 'dwkit[{extra}]'"
        ) from exc


def convert(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fmt: str,
    precision: str | None = None,
    **opts: Any,
) -> ConversionResult:
    """Convert a transformers checkpoint (local dir or hub id) to `fmt` in `out_dir`."""
    module = format_module(fmt)
    precision = precision or module.DEFAULT_PRECISION
    if precision not in module.PRECISIONS:
        raise ConversionError(
            f"unknown precision {precision!r} for {fmt}; choose one of {', '.join(module.PRECISIONS)}"
        )
    return module.convert(resolve_source(source), out_dir, precision, **opts)
