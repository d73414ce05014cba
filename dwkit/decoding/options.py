"""Options for one decoding call and the hypothesis it returns."""

from __future__ import annotations

from dataclasses import dataclass

from dwkit.schema import option, validate


@dataclass
class DecodeOptions:
    """How to decode one 30 s window; every backend maps these onto its decoder.

    The key fields are the config file's `[decode]` table, its `DWKIT_DECODE__*` variables
    and the command line's flags (dwkit.schema derives all three from these declarations).
    `suppress_tokens=None` means the model's own list (generation_config.suppress_tokens),
    as transformers does; pass [] to suppress nothing.
    """

    temperature: float = option(0.0, key=False, minimum=0)  # the long-form fallback sets it
    beam_size: int = option(1, minimum=1, help="beams at temperature 0 (1: greedy)")
    patience: float = option(1.0, above=0, help="beam search patience (stop after patience * beams finished)")
    length_penalty: float | None = option(None, help="beam score length penalty (none: the model's)")
    max_new_tokens: int | None = option(None, minimum=1, help="tokens per window at most (none: the model's)")
    suppress_tokens: list[int] | None = option(
        None, help="token ids never emitted (none: the model's own list; [] suppresses nothing)"
    )
    suppress_blank: bool = option(True, help="suppress a blank first token")
    without_timestamps: bool = option(False, key=False)  # the engine sets it from the mode
    max_initial_timestamp_index: int | None = option(
        None, key=False, minimum=0
    )  # None = the model's (50 = 1.0 s)
    no_speech_detection: bool = option(True, key=False)
    seed: int | None = option(None, help="seed for sampling above temperature 0")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class Hypothesis:
    """The decoded continuation of one prompt (prompt excluded; no end-of-text token)."""

    tokens: list[int]
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float | None
    temperature: float
    finished: bool = True  # False when it stopped at max_new_tokens instead of end-of-text
