"""Audio in: any format FFmpeg reads (through PyAV), bytes or arrays -> 16 kHz mono float32.

`load_audio` returns the whole recording; `AudioStream` yields it block by block as FFmpeg
decodes it, so long recordings can be processed without holding their samples.

Damaged audio has one policy in every format: what decodes is used, and when the file is
truncated or corrupt part-way (a decoder error after the first samples, fewer samples than
the header announces, an Ogg stream without its final page) one warning names the file and
the seconds that decoded. Only a file of which nothing decodes is an error.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from dwkit.constants import SAMPLE_RATE
from dwkit.errors import AudioError

# Decoded audio may fall this short of a header's duration before it counts as truncated:
# encoder padding and priming (up to a frame: 128 ms for Vorbis) and rounded header values.
TRUNCATION_TOLERANCE_S = 0.25

log = logging.getLogger(__name__)

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
        stream = AudioStream(source, sample_rate)
        name = stream.name
        blocks = list(stream)
        samples = (
            np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros(0, dtype=np.float32)
        )
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
        if not source:
            raise AudioError("<bytes>: is empty (0 bytes)")
        return "<bytes>", io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        return getattr(source, "name", "<stream>"), source  # type: ignore[return-value]
    path = Path(source)  # type: ignore[arg-type]
    try:
        if not path.exists():
            raise AudioError(f"{path}: no such file")
        if path.is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        if is_rereadable(path):  # a pipe's size is always 0, and opening it to look would consume it
            if path.stat().st_size == 0:
                raise AudioError(f"{path}: is empty (0 bytes)")
            with open(path, "rb"):  # FFmpeg would report a permission problem as unreadable data
                pass
    except PermissionError as exc:
        raise AudioError(
            f"{path}: permission denied ({exc.strerror}); make it readable by this user"
        ) from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot be opened ({exc.strerror or exc})") from exc
    return str(path), str(path)


class AudioStream:
    """One recording decoded lazily: iterating yields mono float32 blocks at `sample_rate`.

    Opening checks the source (it exists, is readable, FFmpeg finds an audio stream), so bad
    input fails before any model work; only iteration decodes, one FFmpeg frame at a time.
    The blocks, joined, are exactly what `load_audio` returns. A stream is read once.
    """

    def __init__(self, source: AudioInput, sample_rate: int = SAMPLE_RATE):
        import av

        if isinstance(source, np.ndarray):
            raise TypeError("AudioStream decodes files, bytes and file objects; use load_audio for arrays")
        self.name, handle = _open(source)
        self.sample_rate = sample_rate
        try:
            self._container: Any = av.open(handle, mode="r", metadata_errors="ignore")
        except (av.error.FFmpegError, ValueError, OSError) as exc:  # type: ignore[attr-defined]
            raise AudioError(f"{self.name}: not an audio file FFmpeg can read ({exc})") from exc
        if not self._container.streams.audio:
            self.close()
            raise AudioError(f"{self.name}: has no audio stream")
        self.duration = _header_duration(self._container)
        self._announced = _announced_duration(self._container, handle, self.duration)
        self._cut_ogg = (
            self._container.format.name == "ogg"
            and isinstance(handle, str)
            and is_rereadable(handle)
            and not _ogg_is_complete(handle)
        )

    @property
    def expected_samples(self) -> int | None:
        """Sample count the container's header announces (a hint for preallocation), or None."""
        return None if self.duration is None else math.ceil(self.duration * self.sample_rate)

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        container, self._container = self._container, None
        if container is None:
            raise AudioError(f"{self.name}: this AudioStream was already read (open the source again)")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        decoded = 0
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    block = out.to_ndarray().reshape(-1)
                    decoded += len(block)
                    yield block
            for out in resampler.resample(None):
                block = out.to_ndarray().reshape(-1)
                decoded += len(block)
                yield block
        except (av.error.FFmpegError, ValueError, OSError) as exc:  # type: ignore[attr-defined]
            if not decoded:
                raise AudioError(f"{self.name}: not an audio file FFmpeg can read ({exc})") from exc
            seconds = decoded / self.sample_rate
            log.warning(
                "warning: %s: damaged after %.2f s (%s); transcribing the %.2f s that decode",
                self.name,
                seconds,
                " ".join(str(exc).split()),
                seconds,
            )
            return
        finally:
            container.close()
        seconds, announced = decoded / self.sample_rate, self._announced
        if announced and announced - seconds > max(TRUNCATION_TOLERANCE_S, 0.01 * announced):
            reason = f"its header announces {announced:.2f} s"
        elif self._cut_ogg:
            reason = "its last Ogg page is missing"
        else:
            return
        if decoded:
            log.warning(
                "warning: %s: truncated (%s); transcribing the %.2f s that decode", self.name, reason, seconds
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_audio(source: str | os.PathLike[str]) -> None:
    """Fail now, with the reason, unless `source` is a readable file with at least one sample.

    Decodes only up to the first non-empty block, so checking a long file costs nothing. A
    pipe (`/dev/stdin`, a FIFO) can be read only once, so it is checked when it is decoded.
    """
    if not is_rereadable(source):
        _open(source)
        return
    stream = AudioStream(source)
    blocks = iter(stream)
    try:
        if not any(len(block) for block in blocks):
            raise AudioError(f"{stream.name}: holds no audio samples")
    finally:
        blocks.close()  # type: ignore[attr-defined]


def is_rereadable(source: str | os.PathLike[str]) -> bool:
    """A regular file: it has a size and can be opened twice (unlike a pipe or /dev/stdin)."""
    try:
        return stat.S_ISREG(os.stat(source).st_mode)
    except OSError:
        return False


def _announced_duration(container: Any, handle: str | BinaryIO, duration: float | None) -> float | None:
    """Seconds the file says it holds, to tell a truncated file from a short one.

    FFmpeg clamps a WAV's data size to the file's size and derives an Ogg stream's length from
    its last page, so neither says the file was cut; for those two the file itself is asked.
    """
    if not isinstance(handle, str) or not is_rereadable(handle):
        return duration
    name = container.format.name
    if name == "wav":
        try:
            with wave.open(handle) as wav:  # the stdlib reads the header's own data size
                frames, rate, width = wav.getnframes(), wav.getframerate(), wav.getsampwidth()
                channels = wav.getnchannels()
        except (wave.Error, EOFError, OSError):
            return duration  # not plain PCM (float, extensible): FFmpeg's value
        if frames * width * channels >= 0xFFFF_FFF0 or not rate:  # streamed WAV: size unknown
            return None
        return frames / rate
    return duration


_OGG_PAGE_MAX = 65_307  # 27-byte header + 255 lacing values + 255 * 255 bytes of data


def _ogg_is_complete(path: str) -> bool:
    """Whether the file ends with a whole Ogg page flagged end-of-stream.

    No library exposes this (FFmpeg drops a cut page silently), and the format makes it
    cheap: the last page starts with b"OggS", byte 5 carries the end-of-stream flag, and its
    length follows from the lacing table (RFC 3533, section 6).
    """
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _OGG_PAGE_MAX))
        tail = handle.read()
    start = tail.rfind(b"OggS")
    if start < 0 or len(tail) - start < 27:
        return False
    page = tail[start:]
    lacing = page[27 : 27 + page[26]]
    return bool(page[5] & 0x04) and len(page) == 27 + len(lacing) + sum(lacing) and len(lacing) == page[26]


def _header_duration(container: Any) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE units
    stream = container.streams.audio[0]
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def duration(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return len(samples) / sample_rate
