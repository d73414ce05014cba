"""The `dwkit.json` manifest every converted model directory carries.

The manifest is how `dwkit` finds the backend of a directory without being told, and how a
user learns where a model came from and whether it was validated.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dwkit.errors import ModelError

MANIFEST_NAME = "dwkit.json"
MANIFEST_VERSION = 1


def write_manifest(model_dir: Path, data: dict[str, Any]) -> Path:
    """Write `dwkit.json` into `model_dir` (which is normally still a temporary directory)."""
    payload = {"manifest_version": MANIFEST_VERSION, **data}
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
