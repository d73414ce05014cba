"""The guard's recordings (tests/longform/speech_cases.py), cached with the other speech."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

Case = tuple[np.ndarray, list[str]]


def _case(build: Callable[[Path], Case], cache: Path) -> Case:
    from dwkit.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return build(cache / "speech")


@pytest.fixture(scope="session")
def speech_early_end(dwkit_cache: Path) -> Case:
    """(samples, sentences): a window that ends on a single timestamp with 11 s of speech left."""
    from tests.longform.speech_cases import early_end_speech

    return _case(early_end_speech, dwkit_cache)


@pytest.fixture(scope="session")
def speech_silent_gaps(dwkit_cache: Path) -> Case:
    """(samples, sentences): three sentences, each followed by 32 s of silence (~107 s)."""
    from tests.longform.speech_cases import silent_gaps_speech

    return _case(silent_gaps_speech, dwkit_cache)


@pytest.fixture(scope="session")
def speech_skipped_start(dwkit_cache: Path) -> Case:
    """(samples, sentences): one chunk whose timestamped decode (base) loses its first sentence."""
    from tests.longform.speech_cases import skipped_start_speech

    return _case(skipped_start_speech, dwkit_cache)
