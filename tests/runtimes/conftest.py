"""Fixtures the word-timestamp tests of the graph backends (onnx, trt) share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_words_onnx(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    """tiny.en's fp32 onnx export with the alignment graph (the cached export plus that graph)."""
    from tests.converters.test_onnx import converted

    return converted(tiny_en_dir, "fp32", dwkit_cache, word_timestamps=True)


@pytest.fixture(scope="module")
def speech_mel(speech_short) -> np.ndarray:  # type: ignore[no-untyped-def]
    from dwkit.audio import load_audio
    from dwkit.features import log_mel

    return log_mel(load_audio(speech_short[0]), 80)[None]
