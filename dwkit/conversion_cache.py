"""Converted models cached between runs, shared by `dwkit parity` (parity_tests' own
candidates) and `dwkit bench`: a checkpoint converted to one format at one precision is
written once under `<cache>/converted/` and reused until the source weights, dwkit or that
format's converter change.

The conversion itself is the caller's: parity converts in its own process, bench in a worker
process (so the benchmark's parent never imports torch). Conversions here are not validated:
the parity gate, or the benchmark's WER against the baseline, is the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")
# Files whose size and modification time stand for a checkpoint's content (hashing GBs of
# weights on every run would cost more than most conversions).
SOURCE_PATTERNS = ("*.safetensors", "*.bin", "*.json")


def conversion_dir(
    model_dir: Path, fmt: str, precision: str, cache_dir: Path | None = None, module: str | None = None
) -> Path:
    """Where `model_dir` converted to `fmt` at `precision` is (or will be) cached; `module`
    names the code that writes a format dwconvert does not know (a bench peer's own layout)."""
    from dwkit import __version__
    from dwkit.bundled import code_digest, default_cache_dir

    if module is None:
        from dwkit.converters import FORMATS

        module = FORMATS[fmt].module
    model_dir = Path(model_dir)
    key = hashlib.sha256(f"{__version__}:{fmt}:{precision}".encode())
    key.update(code_digest(module).encode())
    for pattern in SOURCE_PATTERNS:
        for path in sorted(model_dir.glob(pattern)):
            stat = path.stat()
            key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / "converted" / f"{model_dir.name}-{fmt}-{precision}-{key.hexdigest()[:12]}"


def cached_conversion(
    model_dir: Path,
    fmt: str,
    precision: str,
    convert: Callable[[Path], Result],
    cache_dir: Path | None = None,
    module: str | None = None,
) -> tuple[Path, Result | None]:
    """The cached directory, converting into it with `convert(out_dir)` when it is missing;
    `convert`'s result, or None when the cache already held it. A lock makes parallel runs
    (pytest-xdist, two benchmarks) convert once."""
    from dwkit.bundled import cache_lock

    out = conversion_dir(model_dir, fmt, precision, cache_dir, module)
    with cache_lock(out.parent / f".{out.name}.lock"):
        if is_converted(out):
            return out, None
        return out, convert(out)


def is_converted(out: Path) -> bool:
    """Converters rename their directory into place when it is complete, dwkit.json in it."""
    return (Path(out) / "dwkit.json").is_file()
