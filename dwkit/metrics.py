"""Word error rate after Whisper's English normaliser, the measure every parity level uses."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def _normalizer():  # type: ignore[no-untyped-def]
    """transformers' EnglishTextNormalizer (Whisper's own) when installed, else a basic one."""
    try:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        return EnglishTextNormalizer({})
    except ImportError:
        return _basic_normalize


def _basic_normalize(text: str) -> str:
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def normalize(text: str) -> str:
    return _normalizer()(text)


def wer(reference: str, hypothesis: str) -> float:
    """WER of `hypothesis` against `reference`, both normalised; 0 for two empty texts."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))
