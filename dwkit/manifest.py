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
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from exc


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
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
