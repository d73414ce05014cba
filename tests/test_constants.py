"""Whisper's fixed numbers, defined once, agree with each other and with transformers'."""

from __future__ import annotations

import pytest

from dwkit import constants as c


def test_derived_constants_agree():
    assert c.FRAME_SECONDS == pytest.approx(c.HOP_LENGTH / c.SAMPLE_RATE)
    assert c.TIME_PRECISION == pytest.approx(c.INPUT_STRIDE * c.FRAME_SECONDS)
    assert c.N_AUDIO_CTX * c.TIME_PRECISION == pytest.approx(c.CHUNK_LENGTH)
    assert c.FRAMES_PER_SECOND * c.FRAME_SECONDS == pytest.approx(1.0)


def test_constants_match_transformers_feature_extractor_and_model():
    transformers = pytest.importorskip("transformers")
    extractor = transformers.WhisperFeatureExtractor()
    assert (extractor.sampling_rate, extractor.n_fft, extractor.hop_length) == (
        c.SAMPLE_RATE,
        c.N_FFT,
        c.HOP_LENGTH,
    )
    assert (extractor.chunk_length, extractor.n_samples, extractor.nb_max_frames) == (
        c.CHUNK_LENGTH,
        c.N_SAMPLES,
        c.N_FRAMES,
    )
    assert transformers.WhisperConfig().max_source_positions == c.N_AUDIO_CTX
