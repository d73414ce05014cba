"""Our numpy log-mel equals transformers' WhisperFeatureExtractor within 1e-4."""

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from dwkit.features import N_FRAMES, log_mel, mel_filters, pad_or_trim


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(16000 * 45 + 123) * 0.1).astype(np.float32)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filters_equal_transformers(n_mels):
    assert np.abs(WhisperFeatureExtractor(feature_size=n_mels).mel_filters - mel_filters(n_mels)).max() < 1e-7


@pytest.mark.parametrize("n_mels", [80, 128])
def test_one_window_equals_feature_extractor(n_mels, noise):
    clip = noise[: 16000 * 7]
    ref = WhisperFeatureExtractor(feature_size=n_mels)(
        clip, sampling_rate=16000, return_tensors="np"
    ).input_features[0]
    ours = log_mel(clip, n_mels)
    assert ours.shape == (n_mels, N_FRAMES)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("n_mels", [80, 128])
def test_long_recording_is_normalised_globally_like_longform(n_mels, noise):
    fe = WhisperFeatureExtractor(feature_size=n_mels)
    ref = fe(
        noise, sampling_rate=16000, return_tensors="np", truncation=False, padding="longest"
    ).input_features[0]
    ours = log_mel(noise, n_mels, pad_to=None)
    assert ours.shape == ref.shape == (n_mels, len(noise) // 160)
    assert np.abs(ours - ref).max() < 1e-4


def test_pad_or_trim():
    mel = np.ones((80, 10), dtype=np.float32)
    padded = pad_or_trim(mel, 16)
    assert padded.shape == (80, 16) and padded[:, 10:].sum() == 0
    assert pad_or_trim(np.ones((80, 20)), 16).shape == (80, 16)
