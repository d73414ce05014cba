"""The one log-mel front end every backend uses (equal to transformers' WhisperFeatureExtractor).

Kept in numpy so that no backend needs torch to compute its inputs. The normalisation
(clamp to max - 8 dB, then (x + 4) / 4) is global over whatever span is passed in: the
sequential mode passes the whole recording, as transformers' long-form generate does, and
the chunked mode one chunk at a time, as its ASR pipeline does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dwkit.audio import AudioInput, AudioStream, load_audio
from dwkit.constants import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from dwkit.errors import AudioError

_BLOCK_FRAMES = 6000  # STFT in blocks of 60 s so long audio never builds a giant frame matrix
_EDGE = N_FFT // 2  # reflection padding on each side of the recording


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters [n_freq=201, n_mels] (librosa's default)."""
    n_freqs = 1 + N_FFT // 2
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(8000.0), n_mels + 2)
    filter_freqs = _mel_to_hz(mel_points)
    fdiff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / fdiff[:-1]
    up = slopes[:, 2:] / fdiff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    enorm = 2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels])
    return (filters * enorm[None, :]).astype(np.float32)


def _hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, 27.0 / np.log(6.4)
    mels = 3.0 * freq / 200.0
    return np.where(
        freq >= min_log_hz,
        min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) * logstep,
        mels,
    )


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, np.log(6.4) / 27.0
    freq = 200.0 * mels / 3.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freq)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float64)  # periodic Hann


def log_mel(samples: np.ndarray, n_mels: int, pad_to: int | None = N_SAMPLES) -> np.ndarray:
    """Log-mel spectrogram [n_mels, frames] of 16 kHz samples.

    `pad_to` zero-pads the samples first (30 s by default, as the feature extractor does
    for one window); pass None to keep the natural length (len // 160 frames).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if pad_to is not None and len(samples) < pad_to:
        samples = np.pad(samples, (0, pad_to - len(samples)))
    n_frames = len(samples) // HOP_LENGTH
    padded = np.pad(samples.astype(np.float64), N_FFT // 2, mode="reflect")
    filters = mel_filters(n_mels).astype(np.float64)
    window = _window()
    log_spec = np.empty((n_mels, n_frames), dtype=np.float32)
    for start in range(0, n_frames, _BLOCK_FRAMES):
        stop = min(start + _BLOCK_FRAMES, n_frames)
        idx = np.arange(start, stop)[:, None] * HOP_LENGTH + np.arange(N_FFT)[None, :]
        spectrum = np.fft.rfft(padded[idx] * window, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = power @ filters
        log_spec[:, start:stop] = np.log10(np.maximum(mel, 1e-10)).T
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@dataclass
class RecordingMel:
    """The log-mel of one whole recording, normalised over all of it (the sequential mode's input)."""

    mel: np.ndarray  # [n_mels, frames], padded to at least 30 s
    n_samples: int  # the recording's own length at 16 kHz, before padding


def recording_mel(source: AudioInput, n_mels: int) -> RecordingMel:
    """`log_mel(load_audio(source), n_mels)` with the recording's length.

    Files, bytes and file objects are decoded and transformed block by block, so the decoded
    audio is never held whole: for 10 minutes that is ~20 MB of mel (80 bins) instead of
    ~40 MB of float32 samples plus their ~80 MB float64 padded copy.
    """
    if isinstance(source, np.ndarray):
        samples = load_audio(source)
        return RecordingMel(log_mel(samples, n_mels), len(samples))
    stream = AudioStream(source)
    mel, n_samples = log_mel_stream(stream, n_mels)
    if n_samples == 0:
        raise AudioError(f"{stream.name}: holds no audio samples")
    return RecordingMel(mel, n_samples)


def log_mel_stream(
    blocks: Iterable[np.ndarray],
    n_mels: int,
    pad_to: int | None = N_SAMPLES,
) -> tuple[np.ndarray, int]:
    """`log_mel` of the concatenated `blocks`, bit for bit, holding ~60 s of samples at a time.

    The STFT runs over the same 6000-frame blocks as `log_mel` (identical shapes, identical
    arithmetic) as soon as the samples of a block and of the frame after it have arrived; the
    un-normalised log spectrogram is kept and the global normalisation runs once at the end,
    in place. Memory follows the samples that arrive, never a header's claimed duration (a
    file may announce days of audio and hold seconds). Returns (mel, number of samples read).
    """
    filters = mel_filters(n_mels).astype(np.float64)
    out = _MelBuffer(n_mels)
    pending: list[np.ndarray] = []  # samples from absolute index `offset` on
    offset = received = start = 0  # `start`: first frame not computed yet
    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        pending.append(block)
        received += len(block)
        # Frames [start, start + BLOCK) are final once the recording is known to have a frame
        # after them; by then every sample they read (up to 40 past the block) has arrived.
        while received >= (start + _BLOCK_FRAMES + 1) * HOP_LENGTH:
            buffer = np.concatenate(pending)
            segment = np.concatenate([buffer[_EDGE:0:-1], buffer]) if start == 0 else buffer
            out.append(_log_spec(segment, _BLOCK_FRAMES, filters))
            start += _BLOCK_FRAMES
            keep_from = start * HOP_LENGTH - _EDGE
            pending = [buffer[keep_from - offset :].copy()]
            offset = keep_from
    samples = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
    if start == 0:  # shorter than a block and a frame: nothing streamed yet
        return log_mel(samples, n_mels, pad_to), received
    if pad_to is not None and received < pad_to:
        samples = np.pad(samples, (0, pad_to - received))
    n_frames = (offset + len(samples)) // HOP_LENGTH
    segment = np.concatenate([samples, samples[-2 : -_EDGE - 2 : -1]])  # reflect the end
    out.append(_log_spec(segment, n_frames - start, filters))
    log_spec = out.finish()
    np.maximum(log_spec, log_spec.max() - 8.0, out=log_spec)
    log_spec += 4.0
    log_spec /= 4.0
    return log_spec, received


def _log_spec(padded: np.ndarray, n_frames: int, filters: np.ndarray) -> np.ndarray:
    """Un-normalised log10 mel [n_mels, n_frames] of frames starting at padded[0] (as in log_mel)."""
    padded = padded.astype(np.float64)
    idx = np.arange(n_frames)[:, None] * HOP_LENGTH + np.arange(N_FFT)[None, :]
    spectrum = np.fft.rfft(padded[idx] * _window(), axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.log10(np.maximum(power @ filters, 1e-10)).T


class _MelBuffer:
    """float32 mel frames grown block by block, as the audio decodes.

    Stored frames-major so that growing is `ndarray.resize`, a realloc: for buffers this large
    glibc remaps the pages instead of copying them, so the peak stays one mel, not two, and
    the untouched tail of a geometric over-allocation costs address space only.
    """

    def __init__(self, n_mels: int):
        self.data = np.empty((2 * _BLOCK_FRAMES, n_mels), dtype=np.float32)
        self.used = 0

    def append(self, block: np.ndarray) -> None:
        stop = self.used + block.shape[1]
        if stop > self.data.shape[0]:
            self.data.resize((max(stop, 2 * self.data.shape[0]), self.data.shape[1]), refcheck=False)
        self.data[self.used : stop] = block.T
        self.used = stop

    def finish(self) -> np.ndarray:
        """[n_mels, frames] (a transposed view: slicing windows out of it is all callers do)."""
        self.data.resize((self.used, self.data.shape[1]), refcheck=False)
        return self.data.T


def pad_or_trim(mel: np.ndarray, frames: int = N_FRAMES) -> np.ndarray:
    """Cut or zero-pad the last axis to `frames` (the encoder always sees 30 s)."""
    if mel.shape[-1] >= frames:
        return mel[..., :frames]
    pad = [(0, 0)] * (mel.ndim - 1) + [(0, frames - mel.shape[-1])]
    return np.pad(mel, pad)
