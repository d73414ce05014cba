"""The one log-mel front end every backend uses (equal to transformers' WhisperFeatureExtractor).

Kept in numpy so that no backend needs torch to compute its inputs. The normalisation
(clamp to max - 8 dB, then (x + 4) / 4) is global over whatever span is passed in: the
sequential mode passes the whole recording, as transformers' long-form generate does, and
the chunked mode one chunk at a time, as its ASR pipeline does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dwkit.audio import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
_BLOCK_FRAMES = 6000  # STFT in blocks of 60 s so long audio never builds a giant frame matrix


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


def pad_or_trim(mel: np.ndarray, frames: int = N_FRAMES) -> np.ndarray:
    """Cut or zero-pad the last axis to `frames` (the encoder always sees 30 s)."""
    if mel.shape[-1] >= frames:
        return mel[..., :frames]
    pad = [(0, 0)] * (mel.ndim - 1) + [(0, frames - mel.shape[-1])]
    return np.pad(mel, pad)
