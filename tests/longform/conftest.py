"""The guard's recordings (tests/longform/speech_cases.py), cached with the other speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def speech_early_end(dwkit_cache: Path) -> tuple[np.ndarray, list[str]]:
    """(samples, sentences): a window that ends on a single timestamp with 11 s of speech left."""
    from dwkit.speech import espeak_available
    from tests.longform.speech_cases import early_end_speech

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return early_end_speech(dwkit_cache / "speech")


@pytest.fixture(scope="session")
def speech_silent_gaps(dwkit_cache: Path) -> tuple[np.ndarray, list[str]]:
    """(samples, sentences): three sentences, each followed by 32 s of silence (~107 s)."""
    from dwkit.speech import espeak_available
    from tests.longform.speech_cases import silent_gaps_speech

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return silent_gaps_speech(dwkit_cache / "speech")


@pytest.fixture(scope="session")
def speech_skipped_start(dwkit_cache: Path) -> tuple[np.ndarray, list[str]]:
    """(samples, sentences): one chunk whose timestamped decode (base) loses its first sentence."""
    from dwkit.speech import espeak_available
    from tests.longform.speech_cases import skipped_start_speech

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return skipped_start_speech(dwkit_cache / "speech")
