"""Decoding one batch of windows with temperature fallback, as Whisper's long-form does.

Shared by both modes: a window is re-decoded at the next temperature when its tokens
compress too well (repetition) or its average log-probability is too low, and skipped as
silence when the no-speech probability is high and the log-probability low.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

from dwkit.decoding.options import Hypothesis
from dwkit.longform.options import LongformOptions
from dwkit.runtimes.base import Backend, EncoderOutput


@dataclass
class WindowResult:
    hypothesis: Hypothesis
    compression_ratio: float
    skipped: bool  # judged silence: contributes no segment


def compression_ratio(tokens: list[int], vocab_size: int) -> float:
    """Raw token bytes over zlib-compressed bytes, on token ids as transformers computes it."""
    width = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(t.to_bytes(width, "little") for t in tokens)
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def decode_with_fallback(
    backend: Backend,
    enc: EncoderOutput,
    prompts: list[list[int]],
    opts: LongformOptions,
    timestamps: bool = True,
) -> list[WindowResult]:
    """One WindowResult per batch row of `enc`; rows needing fallback are re-decoded alone."""
    eot = backend.info.eot
    results: list[WindowResult | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    for attempt, temperature in enumerate(opts.temperatures):
        dopts = replace(opts.decode, temperature=temperature, without_timestamps=not timestamps)
        if temperature > 0:
            dopts = replace(dopts, beam_size=1)
        sub = enc if len(pending) == len(prompts) else select_rows(backend, enc, pending)
        hyps = backend.generate(sub, [prompts[i] for i in pending], dopts)
        still = []
        for i, hyp in zip(pending, hyps):
            ratio = compression_ratio(hyp.tokens + ([eot] if hyp.finished else []), backend.info.vocab_size)
            needs_fallback, skipped = _judge(hyp, ratio, opts)
            results[i] = WindowResult(hyp, ratio, skipped)
            if needs_fallback:
                still.append(i)
        pending = still
        if not pending or attempt == len(opts.temperatures) - 1:
            break
    return [r for r in results if r is not None]


def _judge(hyp: Hypothesis, ratio: float, opts: LongformOptions) -> tuple[bool, bool]:
    """(decode again at the next temperature, skip as silence): repetition or a low log-prob
    asks for another try, unless the window is silence (no speech likely, log-prob low)."""
    too_repetitive = opts.compression_ratio_threshold is not None and ratio > opts.compression_ratio_threshold
    low_logprob = opts.logprob_threshold is not None and hyp.avg_logprob < opts.logprob_threshold
    silence = (
        opts.no_speech_threshold is not None
        and low_logprob
        and hyp.no_speech_prob is not None
        and hyp.no_speech_prob > opts.no_speech_threshold
    )
    return (too_repetitive or low_logprob) and not silence, silence


def select_rows(backend: Backend, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
    select = getattr(backend, "select", None)
    if select is None:
        raise NotImplementedError(f"{backend.name} backend cannot select encoder rows")
    return select(enc, rows)
