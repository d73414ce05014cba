"""dwkit: distil-whisper from its PyTorch checkpoint to every runtime, with proof of parity."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Config", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import dwkit` stays light: no numpy work, torch or backend library until used.
    if name == "load":
        from dwkit.api import load

        return load
    if name == "Config":
        from dwkit.config import Config

        return Config
    raise AttributeError(f"module 'dwkit' has no attribute {name!r}")
