"""The pieces every conversion uses: source resolution, atomic output, the result type.

The conversion procedure itself is `converters/template.py`. Output goes into the temporary
directory that `atomic_output_dir` hands out; the directory is renamed into place only when
the block finishes, so an interrupted or failed conversion never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.errors import ConversionError, ModelError, describe_os_error


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
        from dwkit.foreign import ggml_file

        if path.is_file() and ggml_file(path) is not None:  # a whisper.cpp model is one file
            return path
        raise ModelError(f"{source}: is a file; expected a model directory, a whisper.cpp file or a hub id")
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
    SIGTERM (what `kill`, systemd and container runtimes send) unwinds like Ctrl-C, removing
    the sibling; one left by a process that died harder (SIGKILL, power loss) is swept by the
    next conversion to the same target. OS errors become one ConversionError line.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not overwrite:
        raise ConversionError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_siblings(out_dir)
        tmp = out_dir.with_name(_sibling_name(out_dir, "partial", secrets.token_hex(4)))
        tmp.mkdir(0o777)  # the umask applies, as to any directory the user creates
    except OSError as exc:
        raise ConversionError(f"cannot create {out_dir}: {describe_os_error(exc)}") from exc
    try:
        with _sigterm_unwinds():
            yield tmp
            _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    try:
        _apply_umask(tmp)
        if out_dir.exists():
            tmp.chmod(stat.S_IMODE(out_dir.stat().st_mode))  # a replaced model keeps its mode
            old = out_dir.with_name(_sibling_name(out_dir, "old", secrets.token_hex(4)))
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except OSError as exc:
        raise ConversionError(f"cannot write {out_dir}: {describe_os_error(exc)}") from exc


def _apply_umask(folder: Path) -> None:
    """Give every file in `folder` the mode a new file gets here (0666 less the umask).

    Some writers ignore the umask (safetensors creates its files 0600), which would make a
    shared model readable by its converter alone. The mode is read off a probe file, so the
    process-wide umask is never changed, not even for a moment.
    """
    probe = folder / f".mode-probe-{secrets.token_hex(4)}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _sibling_name(out_dir: Path, kind: str, token: str) -> str:
    """`.OUT.partial-HOST-PID-TOKEN`: hidden, and naming the process that may still need it."""
    return f".{out_dir.name}.{kind}-{socket.gethostname()}-{os.getpid()}-{token}"


def _sweep_stale_siblings(out_dir: Path) -> None:
    """Remove temporary siblings of `out_dir` whose process is gone (on this host)."""
    host = socket.gethostname()
    for kind in ("partial", "old"):
        for sibling in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.{kind}-*"):
            owner = sibling.name[len(f".{out_dir.name}.{kind}-") :].rsplit("-", 2)
            if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and not _alive(int(owner[1])):
                shutil.rmtree(sibling, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) for the block, so `finally` and `except` clean up.

    Only where SIGTERM still has its default action (which kills without unwinding) and only
    in the main thread (the one Python delivers signals to); a handler the program installed
    itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def unwind(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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


@contextlib.contextmanager
def reading_weights(source: Path) -> Iterator[None]:
    """Every converter reads its source's weights inside this block: a truncated safetensors,
    a corrupt or unreadable pytorch_model.bin becomes one ConversionError line, whichever
    library (safetensors, torch, transformers) met it."""
    import pickle

    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors comes with the hf extra
        SafetensorError = OSError  # noqa: N806
    try:
        yield
    except OSError as exc:
        raise ConversionError(f"{source}: cannot read its weights ({describe_os_error(exc)})") from exc
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ConversionError(
            f"{source}: its weights are unreadable, truncated or corrupt ({message}); "
            "download or copy the checkpoint again"
        ) from exc


def release_freed_memory() -> None:
    """Collect, then hand freed heap back: glibc keeps freed pages mapped and malloc_trim
    returns them, so a converter's peak RSS follows what is alive (a no-op where libc has no
    malloc_trim). At full size each step of a conversion holds GBs."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
