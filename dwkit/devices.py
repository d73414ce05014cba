"""What this machine offers, probed without importing any backend library."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# The flags that decide which kernels are fastest here (dwkit/data/auto_choice.toml).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def module_installed(name: str) -> bool:
    """Whether `name` can be imported here, found without importing it (one already imported,
    such as a test's stand-in, counts; find_spec would refuse one without a __spec__)."""
    return name in sys.modules or importlib.util.find_spec(name) is not None


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, from the driver's device nodes (no library imported)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS):
    what `auto` reads to tell AMX, AVX-512 bf16 and plain AVX2 machines apart."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()
