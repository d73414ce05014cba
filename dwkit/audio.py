"""Audio in: any format FFmpeg reads (through PyAV), bytes or arrays -> 16 kHz mono float32."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from dwkit.errors import AudioError

SAMPLE_RATE = 16000

AudioInput = Union[str, os.PathLike, bytes, bytearray, BinaryIO, np.ndarray]


def load_audio(source: AudioInput, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `source` to mono float32 samples at `sample_rate`.

    A numpy array is taken as already decoded at `sample_rate` (mono, or channels-first
    stereo that is averaged). Anything else goes through FFmpeg, so every container and
    codec it knows works, and resampling is FFmpeg's own (swresample).
    """
    if isinstance(source, np.ndarray):
        samples = _from_array(source)
        name = "array"
    else:
        name, handle = _open(source)
        samples = _decode(handle, name, sample_rate)
    if samples.size == 0:
        raise AudioError(f"{name}: holds no audio samples")
    return samples


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array.mean(axis=0 if array.shape[0] <= 8 else 1)
    if array.ndim != 1:
        raise AudioError(f"audio array must be 1-D (mono) or 2-D (channels), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max) + 1.0
        return (array.astype(np.float32) / scale).astype(np.float32)
    return np.ascontiguousarray(array, dtype=np.float32)


def _open(source: AudioInput) -> tuple[str, str | BinaryIO]:
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>", io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        return getattr(source, "name", "<stream>"), source  # type: ignore[return-value]
    path = Path(source)  # type: ignore[arg-type]
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: is empty (0 bytes)")
    return str(path), str(path)


def _decode(handle: str | BinaryIO, name: str, sample_rate: int) -> np.ndarray:
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(handle, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:  # type: ignore[attr-defined]
        raise AudioError(f"{name}: not an audio file FFmpeg can read ({exc})") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def duration(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return len(samples) / sample_rate
