"""Output formats, one module each, behind one registry (`convert`).

Each format module declares itself (`FORMAT`, a `template.FormatSpec`: name, pip extra,
precisions, default precision, options, ...) and fills in the shared conversion procedure of
`converters/template.py`. Everything a caller needs about formats (`FORMATS`, the CLI's
choices, default precisions, the extra to install) is read from those declarations. Format
modules import their libraries only when converting, so listing formats costs nothing and a
missing optional library affects only its own format.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import Any

from dwkit import devices
from dwkit.converters.base import ConversionResult, resolve_source
from dwkit.converters.template import FormatSpec, run
from dwkit.errors import BackendUnavailable, ConversionError

# The modules that write an output format, in the order `dwconvert --to` lists them.
FORMAT_MODULES = ("ct2", "onnx", "trt", "ggml", "openvino")


def _declared() -> dict[str, FormatSpec]:
    specs = [importlib.import_module(f"{__name__}.{name}").FORMAT for name in FORMAT_MODULES]
    return {spec.name: spec for spec in specs}


FORMATS: dict[str, FormatSpec] = _declared()


def format_names() -> tuple[str, ...]:
    """The `--to` choices."""
    return tuple(FORMATS)


def format_module(fmt: str) -> ModuleType:
    """The module that writes `fmt`; a clear error for unknown formats or missing libraries."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    missing = [name for name in spec.requires if not devices.module_installed(name)]
    if missing:
        raise BackendUnavailable(f"--to {fmt} needs {', '.join(missing)}: pip install 'dwkit[{spec.extra}]'")
    return importlib.import_module(spec.module)


def convert(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fmt: str,
    precision: str | None = None,
    **opts: Any,
) -> ConversionResult:
    """Convert a transformers checkpoint (local dir or hub id) to `fmt` in `out_dir`."""
    module = format_module(fmt)
    return run(module, resolve_source(source), out_dir, precision or FORMATS[fmt].default_precision, **opts)
