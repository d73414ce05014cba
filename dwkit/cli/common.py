"""What both command-line tools share: error handling, atomic file output, version."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from dwkit import __version__
from dwkit.errors import DwkitError


def run_cli(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """Run `main`; a DwkitError becomes one line on stderr and exit 1, Ctrl-C exit 130."""
    _show_dwkit_logs(prog)
    try:
        return main(argv)
    except DwkitError as exc:
        message = " ".join(str(exc).split())  # wrapped library messages become one line
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _show_dwkit_logs(prog: str) -> None:
    """dwkit's own INFO lines (e.g. which backend `auto` chose and why) go to stderr."""
    logger = logging.getLogger("dwkit")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def write_atomic(path: Path, text: str) -> None:
    """Write text next to `path` and rename it into place, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
