"""What both command-line tools share: error handling, atomic file output, version."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from dwkit import __version__
from dwkit.errors import DwkitError, OutputError, describe_os_error


def run_cli(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """Run `main`; a DwkitError or an OSError becomes one line on stderr and exit 1, Ctrl-C exit 130."""
    _show_dwkit_logs(prog)
    try:
        return main(argv)
    except DwkitError as exc:
        message = " ".join(str(exc).split())  # wrapped library messages become one line
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # permissions, a full disk, a read-only filesystem: the user's to fix
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _show_dwkit_logs(prog: str) -> None:
    """dwkit's own INFO lines (e.g. which backend `auto` chose and why) go to stderr."""
    logger = logging.getLogger("dwkit")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged, not when the CLI first ran
    (an embedding program or a test may have replaced it since)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def write_atomic(path: Path, text: str) -> None:
    """Write text next to `path` and rename it into place, so readers never see half a file.

    The file gets the mode any new file would (0666 less the umask), and a file it replaces
    keeps its own mode. An operating-system error becomes an OutputError naming the path.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from exc


def check_writable(folder: Path) -> None:
    """Fail before any work (loading a model, decoding) when files cannot be created in `folder`:
    its nearest existing ancestor must be a directory this user may write."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))
        raise OutputError(f"cannot write into {folder}: {describe_os_error(denied)}")
