"""The lost-speech guard: early endings decoded on, silence left silent, exact mode untouched."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dwkit.decoding.options import Hypothesis
from dwkit.longform import guard, windows
from dwkit.longform.options import LongformOptions
from dwkit.metrics import wer
from dwkit.transcriber import Transcriber
from tests.hf_reference import generate_longform, pipeline_chunked

TB = 50364  # tiny.en's first timestamp token (<|0.00|>)
GREEDY = dict(
    temperatures=(0.0,), compression_ratio_threshold=None, logprob_threshold=None, no_speech_threshold=None
)


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def _hyp(no_speech: float | None) -> Hypothesis:
    return Hypothesis([1], 0.0, 0.0, no_speech, 0.0)


def test_early_end_is_a_single_closing_timestamp_after_text():
    assert guard.early_end([TB, 100, 200, TB + 160], TB) == 320
    assert guard.early_end([TB, 100, TB + 150, TB + 150], TB) is None  # a complete segment, then more
    assert guard.early_end([TB, 100, 200], TB) is None  # cut off mid-segment
    assert guard.early_end([TB + 5], TB) is None


def test_the_guard_decodes_on_only_with_a_second_of_audio_left_and_never_in_exact_mode():
    tokens = [TB, 100, TB + 160]  # ends at 3.20 s = 320 frames
    assert guard.should_resume(LongformOptions(), tokens, TB, seek=0, speech_end=2500) == 320
    assert guard.should_resume(LongformOptions(), tokens, TB, seek=0, speech_end=400) is None
    assert guard.should_resume(LongformOptions(exact_transformers=True), tokens, TB, 0, 2500) is None
    assert guard.should_resume(LongformOptions(), [TB, 100, TB], TB, 0, 2500) is None  # no progress


def test_with_vad_the_guard_decodes_on_only_where_it_hears_speech():
    tokens = [TB, 100, TB + 160]  # ends at 320 frames
    speech = np.zeros(2500, dtype=bool)
    speech[:300] = True  # speech only before the closing timestamp
    assert guard.should_resume(LongformOptions(), tokens, TB, 0, 2500, speech) is None
    speech[1200:1300] = True
    assert guard.should_resume(LongformOptions(), tokens, TB, 0, 2500, speech) == 320


def test_a_guard_window_is_silence_by_its_no_speech_probability():
    assert guard.judged_silent(_hyp(0.9), LongformOptions())
    assert not guard.judged_silent(_hyp(0.3), LongformOptions())
    assert guard.judged_silent(_hyp(0.7), LongformOptions(no_speech_threshold=None))  # OpenAI's 0.6
    assert not guard.judged_silent(_hyp(0.7), LongformOptions(no_speech_threshold=0.8))
    assert not guard.judged_silent(_hyp(None), LongformOptions())


def test_a_guard_window_loses_the_words_it_repeats():
    previous = [TB, 10, 11, 12, 13, 14, TB + 100]
    repeat = [TB, 12, 13, 99, TB + 20, TB + 20]  # "12 13 14" heard again as "12 13 99"
    assert guard.drop_repeat(previous, repeat, TB) == [TB, TB + 20, TB + 20]
    repeat_then_new = [TB, 13, 14, 20, TB + 40]
    assert guard.drop_repeat(previous, repeat_then_new, TB) == [TB, 20, TB + 40]
    new = [TB, 20, 21, 22, TB + 40]
    assert guard.drop_repeat(previous, new, TB) == new


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_default_keeps_every_sentence_after_an_early_end(tiny_en_dir, speech_early_end, mode):
    samples, sentences = speech_early_end
    spoken = " ".join(sentences)
    exact = _transcribe(tiny_en_dir, samples, mode=mode, exact_transformers=True)
    default = _transcribe(tiny_en_dir, samples, mode=mode)
    assert wer(spoken, exact.text) > 0.5  # the fixture still triggers: transformers keeps one sentence
    heard = set(_words(default.text))
    for sentence in sentences:
        words = _words(sentence)
        assert sum(w in heard for w in words) >= 0.8 * len(words), (sentence, default.text)
    assert wer(spoken, default.text) < 0.15
    assert all(a.end <= b.start + 1e-6 for a, b in zip(default.segments, default.segments[1:]))
    assert default.segments[-1].end > 10.0  # segment times cover the recovered speech


def test_exact_transformers_equals_the_pipeline_on_an_early_end(tiny_en_dir, speech_early_end):
    samples, _ = speech_early_end
    opts = LongformOptions(mode="chunked", exact_transformers=True, batch_size=4, **GREEDY)
    ours = Transcriber.from_model_dir(tiny_en_dir, "hf", options=opts).transcribe(samples)
    reference = pipeline_chunked(tiny_en_dir, samples, opts)
    assert ours.text == reference["text"]
    assert [(s.start, s.end) for s in ours.segments] == [
        (start, ours.duration if end is None else min(end, ours.duration))
        for start, end in (c["timestamp"] for c in reference["chunks"])
    ]


def test_exact_transformers_equals_generate_on_an_early_end(tiny_en_dir, speech_early_end):
    samples, _ = speech_early_end
    opts = LongformOptions(exact_transformers=True)
    ours = Transcriber.from_model_dir(tiny_en_dir, "hf", options=opts).transcribe(samples)
    text, segments = generate_longform(tiny_en_dir, samples, opts)
    assert ours.text == text
    assert [s.tokens for s in ours.segments] == [s.tokens for s in segments]


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_the_guard_adds_no_text_in_silence(tiny_en_dir, speech_silent_gaps, mode, monkeypatch):
    samples, sentences = speech_silent_gaps
    looked: list[int] = []

    def recording(*args):  # type: ignore[no-untyped-def]
        advance = guard.should_resume(*args)
        if advance is not None:
            looked.append(advance)
        return advance

    exact = _transcribe(tiny_en_dir, samples, mode=mode, exact_transformers=True)
    monkeypatch.setattr(windows, "should_resume", recording)
    default = _transcribe(tiny_en_dir, samples, mode=mode)
    assert looked  # the guard decoded on into a silent gap...
    assert _words(default.text) == _words(exact.text)  # ...and found no words there
    assert wer(" ".join(sentences), default.text) < 0.1


def _transcribe(model_dir, samples, **options):  # type: ignore[no-untyped-def]
    opts = LongformOptions(**options)
    return Transcriber.from_model_dir(model_dir, "hf", options=opts).transcribe(samples)
