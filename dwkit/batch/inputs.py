"""The corpus: `--input` as a glob, a directory or a manifest (one path per line), fingerprinted."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from dwkit.errors import ConfigError
from dwkit.manifest import file_sha256

# What a directory walk picks up (a glob or a manifest takes any file it names).
AUDIO_SUFFIXES = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .webm .mp4 .mkv .mka .wma .aiff .aif .amr".split()
)
_MAGIC = set("*?[")


@dataclass(frozen=True)
class InputFile:
    """One file of the corpus: its absolute path (the key of its record), where its per-file
    outputs go relative to the output directory, and its content hash (with the path, what
    makes a re-run skip it)."""

    path: str
    relative: str
    sha256: str


def list_inputs(spec: str) -> tuple[list[Path], Path]:
    """The files `spec` names, sorted and absolute, and the root their per-file outputs mirror.

    A directory is walked for audio files (by suffix); a path with glob characters is a glob
    (`**` recurses); an audio file is a corpus of one; any other file is a manifest: one path per line, relative to the
    manifest's folder, blank lines and `#` comments skipped.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        root = path.resolve()
        files = [p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
    elif _MAGIC & set(spec):
        root = _glob_root(spec)
        files = [Path(p).resolve() for p in glob.glob(os.path.expanduser(spec), recursive=True)]
        files = [p for p in files if p.is_file()]
    elif path.is_file():
        root = path.resolve().parent
        files = [path.resolve()] if path.suffix.lower() in AUDIO_SUFFIXES else _read_manifest(path, root)
    else:
        raise ConfigError(f"--input {spec}: no such file, directory or glob match")
    if not files:
        raise ConfigError(f"--input {spec}: names no audio files")
    return sorted(set(files)), root


def fingerprint(files: list[Path], root: Path) -> list[InputFile]:
    """Hash every file's bytes; a file that cannot be read keeps an empty hash and fails later,
    in its actor, as an error row (one bad file never stops the job)."""
    out = []
    for path in files:
        try:
            digest = file_sha256(path)
        except OSError:
            digest = ""
        out.append(InputFile(str(path), relative_to(path, root), digest))
    return out


def relative_to(path: Path, root: Path) -> str:
    """Where `path`'s outputs go under the output directory: its place under `root`, or, for a
    file outside it, its absolute path mirrored (never a collision, never outside the folder)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix().lstrip("/")


def _glob_root(spec: str) -> Path:
    parts = Path(os.path.expanduser(spec)).parts
    fixed = []
    for part in parts:
        if _MAGIC & set(part):
            break
        fixed.append(part)
    return Path(*fixed).resolve() if fixed else Path.cwd()


def _read_manifest(path: Path, root: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--input {path}: cannot read it as a manifest (one audio path per line): {exc}"
        ) from exc
    files = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            files.append((root / Path(line).expanduser()).resolve())
    return files
