"""dwkit: distil-whisper from its PyTorch checkpoint to every runtime, with proof of parity."""

__version__ = "0.1.0"
