"""The `dwkit.json` manifest every converted model directory carries.

The manifest is how `dwkit` finds the backend of a directory without being told, and how a
user learns where a model came from and whether it was validated. Converters build a typed
`Manifest`; readers get the plain dict of the file (`read_manifest`), so files written by
older versions, which carry the same keys, read the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.errors import ModelError

MANIFEST_NAME = "dwkit.json"
MANIFEST_VERSION = 1


@dataclass
class Manifest:
    """What every converted directory records; `fields` holds the keys only its format has
    (graphs, build plan, model file, ...), written beside the common ones."""

    format: str
    precision: str
    source: dict[str, Any] | None
    tool: str
    weights_checksum: str
    library_versions: dict[str, str]
    model_info: dict[str, Any]
    conversion_seconds: float | None = None
    stage_seconds: dict[str, float] | None = None
    validation: dict[str, Any] | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The file's content: `manifest_version` first, format fields before the validation."""
        common = {
            "manifest_version": MANIFEST_VERSION,
            "format": self.format,
            "precision": self.precision,
            "source": self.source,
            "tool": self.tool,
            "weights_checksum": self.weights_checksum,
            "library_versions": self.library_versions,
            "model_info": self.model_info,
            "conversion_seconds": self.conversion_seconds,
            "stage_seconds": self.stage_seconds,
        }
        return {**common, **self.fields, "validation": self.validation}


def write_manifest(model_dir: Path, data: Manifest | dict[str, Any]) -> Path:
    """Write `dwkit.json` into `model_dir` (which is normally still a temporary directory)."""
    payload = data.to_dict() if isinstance(data, Manifest) else {"manifest_version": MANIFEST_VERSION, **data}
    path = Path(model_dir) / MANIFEST_NAME
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """Return the manifest of `model_dir`, or None when the directory has none."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    return read_json_object(path, "unreadable manifest")


def read_json_object(path: Path, what: str = "unreadable") -> dict[str, Any]:
    """A model side file (dwkit.json, config.json, ...) that must hold one JSON object.

    Whatever the file holds (bad UTF-8, broken or deeply nested JSON, a list where an object
    belongs) is one ModelError naming it, never a traceback from the parser.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise ModelError(f"{path}: {what} (nested too deeply to be a model file)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: {what} (holds a JSON {type(data).__name__}, not an object)")
    return data


def contained_file(model_dir: Path, name: object, key: str) -> Path:
    """`model_dir / name` for a file a manifest names under `key`, refused unless inside it.

    Checked on the name, not the resolved path: a hub snapshot's files are symlinks into its
    blob store, and those are fine; `../x.bin` or `/etc/x` in a manifest are not.
    """
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelError(
            f"{model_dir / MANIFEST_NAME}: {key} {name!r} is not a file name inside the model "
            "directory; a manifest may only name files beside it (convert the model again)"
        )
    return model_dir / name


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def weights_checksum(model_dir: str | Path) -> str:
    """One checksum over every weight file of a checkpoint, in name order (a weight file is
    what any backend's declaration names as one)."""
    from dwkit.runtimes import declarations

    model_dir = Path(model_dir)
    patterns = {pattern for s in declarations().specs.values() for pattern in s.weight_files}
    files = sorted({p for pattern in patterns for p in model_dir.glob(pattern)})
    if model_dir.is_file():  # a single-file model (a whisper.cpp ggml-*.bin)
        files = [model_dir]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
