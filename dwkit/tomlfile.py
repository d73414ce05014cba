"""The one TOML reader: config files, parity thresholds and bench configs all read through it.

Python 3.11 has tomllib; 3.10 needs tomli. Every failure (missing file, a directory,
unreadable bytes, bad syntax) is a ConfigError that names the file, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dwkit.errors import ConfigError


def tomllib() -> Any:
    """The TOML parser module of this Python."""
    try:
        import tomllib as parser
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as parser  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise ConfigError("reading TOML on Python 3.10 needs tomli: pip install tomli") from exc
    return parser


def read_toml_text(text: str, origin: str) -> dict[str, Any]:
    """Parse TOML text; `origin` names it in the error."""
    parser = tomllib()
    try:
        return parser.loads(text)
    except parser.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML ({exc})") from exc


def read_toml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a TOML file, with one-line errors that name it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from exc
    return read_toml_text(text, str(path))
