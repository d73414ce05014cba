"""Temperature fallback: which windows are decoded again, and which are skipped as silence."""

from __future__ import annotations

from types import SimpleNamespace

from dwkit.decoding.options import Hypothesis
from dwkit.longform.fallback import decode_with_fallback
from dwkit.longform.options import LongformOptions
from dwkit.runtimes.base import EncoderOutput

EOT, VOCAB = 50256, 51864


class ScriptedBackend:
    """Row r answers with `script[r](temperature)`; records every (row, temperature) decoded."""

    name = "scripted"

    def __init__(self, script):
        self.info = SimpleNamespace(eot=EOT, vocab_size=VOCAB)
        self.script, self.calls = script, []

    def select(self, enc, rows):
        return EncoderOutput(list(rows), len(rows))

    def generate(self, enc, prompts, opts):
        rows = enc.data if enc.data is not None else range(len(prompts))
        self.calls.extend((row, opts.temperature) for row in rows)
        return [self.script[row](opts.temperature) for row in rows]


def _hyp(tokens, avg_logprob, no_speech_prob=0.01):
    return lambda t: Hypothesis(tokens, avg_logprob * len(tokens), avg_logprob, no_speech_prob, t)


def test_fallback_retries_repetition_and_low_logprob_and_skips_silence():
    speech = _hyp([100, 200, 300, 400], -0.2)
    repetitive = _hyp([100] * 200, -0.2)  # compresses far better than 1.35
    unsure = _hyp([100, 200, 300], -1.5)
    silence = _hyp([100], -1.5, no_speech_prob=0.9)
    backend = ScriptedBackend([speech, repetitive, unsure, silence])
    opts = LongformOptions(temperatures=(0.0, 0.5, 1.0))
    results = decode_with_fallback(backend, EncoderOutput(None, 4), [[1]] * 4, opts)  # type: ignore[arg-type]
    assert [r.skipped for r in results] == [False, False, False, True]
    tried = {row: [t for r, t in backend.calls if r == row] for row in range(4)}
    assert tried == {0: [0.0], 1: [0.0, 0.5, 1.0], 2: [0.0, 0.5, 1.0], 3: [0.0]}
    assert results[1].compression_ratio > 1.35 and results[1].hypothesis.temperature == 1.0


def test_without_thresholds_nothing_falls_back_or_is_skipped():
    backend = ScriptedBackend([_hyp([100] * 200, -3.0, no_speech_prob=0.99)])
    opts = LongformOptions(
        temperatures=(0.0, 0.5),
        compression_ratio_threshold=None,
        logprob_threshold=None,
        no_speech_threshold=None,
    )
    (result,) = decode_with_fallback(backend, EncoderOutput(None, 1), [[1]], opts)  # type: ignore[arg-type]
    assert not result.skipped and backend.calls == [(0, 0.0)]
