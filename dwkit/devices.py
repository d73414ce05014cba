"""What this machine offers, probed without importing any backend library."""

from __future__ import annotations

import os
from pathlib import Path


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, from the driver's device nodes (no library imported)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))
