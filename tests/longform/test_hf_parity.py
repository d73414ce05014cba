"""Our long-form engine on the hf backend reproduces transformers' own long-form outputs."""

from __future__ import annotations

import pytest

from dwkit.audio import load_audio
from dwkit.longform.options import LongformOptions
from dwkit.metrics import wer
from dwkit.transcriber import Transcriber
from tests.hf_reference import generate_longform, pipeline_chunked

# transformers' own algorithm (no lost-speech guard): these tests prove token-for-token equality.
EXACT = dict(exact_transformers=True)
# Greedy without fallback: deterministic on both sides, so outputs must be identical.
GREEDY = dict(
    temperatures=(0.0,),
    compression_ratio_threshold=None,
    logprob_threshold=None,
    no_speech_threshold=None,
    **EXACT,
)


def _check_sequential(model_dir, speech, opts: LongformOptions) -> None:
    path, spoken = speech
    audio = load_audio(path)
    ours = Transcriber.from_model_dir(model_dir, "hf", options=opts).transcribe(audio)
    text, segments = generate_longform(model_dir, audio, opts)
    assert ours.text == text
    assert [s.tokens for s in ours.segments] == [s.tokens for s in segments]
    # dwkit keeps every time inside the audio; transformers can end the last segment in the
    # zero padding of the last window (7.68 s on a 7.56 s clip), so its times are clamped here
    for mine, theirs in zip(ours.segments, segments):
        assert mine.start == pytest.approx(min(theirs.start, ours.duration), abs=0.02)
        assert mine.end == pytest.approx(min(theirs.end, ours.duration), abs=0.02)
    assert wer(spoken, ours.text) < 0.25


def _check_chunked(model_dir, speech, opts: LongformOptions) -> None:
    path, spoken = speech
    audio = load_audio(path)
    ours = Transcriber.from_model_dir(model_dir, "hf", options=opts).transcribe(audio)
    reference = pipeline_chunked(model_dir, audio, opts)
    assert ours.text == reference["text"]
    if opts.return_timestamps:
        assert [(s.start, s.end) for s in ours.segments] == [
            (min(start, ours.duration), ours.duration if end is None else min(end, ours.duration))
            for start, end in (c["timestamp"] for c in reference["chunks"])
        ]
    assert wer(spoken, ours.text) < 0.25


def test_sequential_short_form_equals_generate(tiny_en_dir, speech_short):
    _check_sequential(tiny_en_dir, speech_short, LongformOptions(**EXACT))


def test_sequential_long_form_equals_generate_with_fallback_settings(tiny_en_dir, speech_long):
    # distil-whisper's defaults (fallback thresholds on): clear speech never falls back, so
    # both sides stay greedy and must agree exactly.
    _check_sequential(tiny_en_dir, speech_long, LongformOptions(**EXACT))


def test_chunked_equals_pipeline_without_timestamps(tiny_en_dir, speech_long):
    _check_chunked(
        tiny_en_dir,
        speech_long,
        LongformOptions(mode="chunked", return_timestamps=False, batch_size=4, **GREEDY),
    )


def test_chunked_equals_pipeline_with_timestamps(tiny_en_dir, speech_long):
    _check_chunked(
        tiny_en_dir,
        speech_long,
        LongformOptions(mode="chunked", return_timestamps=True, batch_size=4, **GREEDY),
    )


@pytest.mark.slow
def test_multilingual_sequential_detects_english_and_equals_generate(base_dir, speech_long):
    path, _ = speech_long
    ours = Transcriber.from_model_dir(base_dir, "hf").transcribe(load_audio(path))
    assert ours.language == "en"
    _check_sequential(base_dir, speech_long, LongformOptions(**EXACT))


@pytest.mark.slow
def test_multilingual_chunked_equals_pipeline(base_dir, speech_long):
    _check_chunked(
        base_dir, speech_long, LongformOptions(mode="chunked", language="en", batch_size=4, **GREEDY)
    )


def test_batched_files_equal_one_at_a_time(tiny_en_dir, speech_short, speech_long):
    transcriber = Transcriber.from_model_dir(tiny_en_dir, "hf", options=LongformOptions(**GREEDY))
    short, long_ = load_audio(speech_short[0]), load_audio(speech_long[0])[: 16000 * 45]
    together = transcriber.transcribe_batch([short, long_])
    alone = [transcriber.transcribe(short), transcriber.transcribe(long_)]
    assert [t.text for t in together] == [t.text for t in alone]
