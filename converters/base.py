"""The pieces every conversion uses: source resolution, atomic output, the result type.

The conversion procedure itself is `converters/template.py`. Output goes into the temporary
directory that `atomic_output_dir` hands out; the directory is renamed into place only when
the block finishes, so an interrupted or failed conversion never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.errors import ConversionError, ModelError


@dataclass
class ConversionResult:
    """What a conversion produced and how it validated."""

    out_dir: Path
    fmt: str
    precision: str
    manifest: dict[str, Any]
    validation: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """A local checkpoint directory, or a hub id resolved through huggingface_hub.

    Offline (no network here, and often none in production build jobs) the hub id is served
    from the local cache; when it is not cached the error says so instead of hanging.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"{source}: is a file; expected a model directory or a hub id")
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ModelError(f"{source}: no such model directory (and not a hub id 'org/name')")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise ModelError("resolving hub ids needs huggingface_hub: pip install dwkit") from exc
    try:
        return Path(snapshot_download(text, local_files_only=_offline()))
    except LocalEntryNotFoundError as exc:
        raise ModelError(
            f"{source}: not in the local Hugging Face cache and the hub is unreachable; "
            "download it where there is network or pass a local directory"
        ) from exc
    except Exception as exc:  # network errors, 401/404 from the hub
        raise ModelError(f"{source}: could not be fetched from the hub ({exc})") from exc


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `out_dir`; rename it to `out_dir` only on success.

    The sibling lives on the same filesystem, so the final rename is atomic. An existing
    `out_dir` is refused unless `overwrite` is set, and even then is replaced only at the end.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not overwrite:
        raise ConversionError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the finished model private to its converter
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def copy_if_present(src_dir: Path, dst_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Copy the named side files (tokenizer, configs) that exist in `src_dir`."""
    copied = []
    for name in names:
        if (src_dir / name).is_file():
            shutil.copy2(src_dir / name, dst_dir / name)
            copied.append(name)
    return copied


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the libraries a conversion used, for the manifest."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("dwkit", *names):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def require_checkpoint(source: Path) -> None:
    """A transformers checkpoint with weights and tokenizer.json, before any work starts."""
    if not (any(source.glob("*.safetensors")) or any(source.glob("pytorch_model*.bin"))):
        raise ConversionError(f"{source}: no weights (model.safetensors or pytorch_model.bin) to convert")
    if not (source / "tokenizer.json").is_file():
        raise ConversionError(
            f"{source}: no tokenizer.json; the converted model needs it (dwkit and faster-whisper read it)"
        )
