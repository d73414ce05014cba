"""Audio files in real containers and codecs, written by PyAV (FFmpeg's own encoders), for tests
of how damaged files decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# file suffix -> (PyAV container format, encoder, sample rate the encoder accepts)
FORMATS = {
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "opus": ("ogg", "libopus", 48000),
}


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    """A 0.3-amplitude sine: every sample is audible, so every decoded second counts."""
    return (0.3 * np.sin(np.arange(int(rate * seconds)) * (2 * np.pi * 440 / rate))).astype(np.float32)


def encode(path: Path, seconds: float, suffix: str | None = None) -> Path:
    """A mono tone of `seconds` in the format named by `suffix` (default: the path's suffix)."""
    import av

    container_format, codec, rate = FORMATS[suffix or path.suffix.lstrip(".")]
    pcm = (tone(seconds, rate) * 32767).astype(np.int16)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def truncate(path: Path, fraction: float, out: Path | None = None) -> Path:
    """The first `fraction` of the file's bytes (a download or copy that stopped part-way)."""
    data = path.read_bytes()
    out = out or path.with_name(f"cut-{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def claim_flac_samples(path: Path, total: int) -> Path:
    """Rewrite the STREAMINFO total-samples field (36 bits, after rate/channels/bits) in place."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must be the first block"
    packed = int.from_bytes(data[18:26], "big")
    mask = (1 << 36) - 1
    data[18:26] = ((packed & ~mask) | (total & mask)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path
