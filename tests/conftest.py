"""Shared fixtures: real trained models, seeded random models and synthetic speech.

Everything expensive is built once and cached across runs under `$DWKIT_CACHE` (default
`<repo>/.cache/dwkit`, gitignored). Cache entries are keyed by the code and package
versions that made them, so a stale entry is rebuilt, never reused. A missing optional
package (the PyPI model packages, espeak-ng) skips the tests that need it, with the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("DWKIT_CACHE", str(REPO / ".cache" / "dwkit"))
# Before torch is imported: on a shared 2-core machine OpenMP's default spin-waiting made
# tiny.en's generate 15x slower (16 s instead of 1 s) whenever another process was busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
CACHE = Path(os.environ["DWKIT_CACHE"]).expanduser()

# speech_short: two sentences, ~7.6 s.
SHORT_SENTENCE_INDICES = (1, 8)


@pytest.fixture(scope="session")
def dwkit_cache() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


def _bundled(name: str, cache: Path) -> Path:
    from dwkit.bundled import bundled_model, bundled_source
    from dwkit.errors import ModelError

    try:
        bundled_source(name)
    except ModelError as exc:
        pytest.skip(str(exc))
    return bundled_model(name, cache)


@pytest.fixture(scope="session")
def tiny_en_dir(dwkit_cache: Path) -> Path:
    """Real tiny.en (English-only, 80 mels) as a transformers checkpoint."""
    return _bundled("tiny.en", dwkit_cache)


@pytest.fixture(scope="session")
def base_dir(dwkit_cache: Path) -> Path:
    """Real multilingual base (80 mels, 99 languages) as a transformers checkpoint."""
    return _bundled("base", dwkit_cache)


def _random(preset: str, cache: Path) -> Path:
    from dwkit.errors import ModelError
    from dwkit.synthetic import random_model

    try:
        return random_model(preset, seed=0, cache_dir=cache)
    except ModelError as exc:  # the tokenizer comes from the bundled base package
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def random_tiny80_dir(dwkit_cache: Path) -> Path:
    """Seeded random tiny: d_model 384, 4+4 layers, 80 mels, vocab 51865."""
    return _random("tiny-80", dwkit_cache)


@pytest.fixture(scope="session")
def random_distil128_dir(dwkit_cache: Path) -> Path:
    """Seeded random distil-shaped model: 128 mels, vocab 51866, 2 decoder layers."""
    return _random("distil-128", dwkit_cache)


def _speech(sentences: list[str], cache: Path) -> tuple[Path, str]:
    from dwkit.speech import cached_speech, espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return cached_speech(sentences, cache / "speech"), " ".join(sentences)


@pytest.fixture(scope="session")
def speech_short(dwkit_cache: Path) -> tuple[Path, str]:
    """(16 kHz wav, spoken text): two sentences, ~7.6 s."""
    from dwkit.speech import SENTENCES

    return _speech([SENTENCES[i] for i in SHORT_SENTENCE_INDICES], dwkit_cache)


@pytest.fixture(scope="session")
def speech_long(dwkit_cache: Path) -> tuple[Path, str]:
    """(16 kHz wav, spoken text): 35 distinct sentences with 0.8 s pauses, ~2 min 33 s."""
    from dwkit.speech import SENTENCES

    return _speech(list(SENTENCES), dwkit_cache)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@pytest.fixture(scope="session")
def simple_wer() -> Callable[[str, str], float]:
    """WER after lowercasing and removing punctuation (no spelling normalisation)."""
    import jiwer

    def wer(reference: str, hypothesis: str) -> float:
        return float(jiwer.wer(_words(reference), _words(hypothesis) or "<empty>"))

    return wer
