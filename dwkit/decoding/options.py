"""Options for one decoding call and the hypothesis it returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecodeOptions:
    """How to decode one 30 s window; every backend maps these onto its decoder.

    `suppress_tokens=None` means the model's own list (generation_config.suppress_tokens),
    as transformers does; pass [] to suppress nothing.
    """

    temperature: float = 0.0
    beam_size: int = 1
    patience: float = 1.0
    length_penalty: float | None = None
    max_new_tokens: int | None = None
    suppress_tokens: list[int] | None = None
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp_index: int | None = None  # None = the model's (50 = 1.0 s)
    no_speech_detection: bool = True
    seed: int | None = None


@dataclass
class Hypothesis:
    """The decoded continuation of one prompt (prompt excluded; no end-of-text token)."""

    tokens: list[int]
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float | None
    temperature: float
    finished: bool = True  # False when it stopped at max_new_tokens instead of end-of-text
