"""Every response format through the real openai client equals `dwkit transcribe`'s output."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.serve.conftest import MODEL_NAME, make_client


@pytest.mark.parametrize(("response_format", "cli_format"), [("text", "txt"), ("srt", "srt"), ("vtt", "vtt")])
def test_text_formats_are_dwkit_transcribes_bytes(
    client, speech_short, reference, response_format, cli_format
):
    audio, _ = speech_short
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(file=f, model=MODEL_NAME, response_format=response_format)
    assert answer == reference(audio, cli_format)


def test_json_is_the_transcript_text(client, speech_short, reference):
    audio, _ = speech_short
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(file=f, model=MODEL_NAME)
    assert answer.text == reference(audio, "txt").strip()
    assert answer.text  # tiny.en hears the speech


def test_verbose_json_has_dwkit_transcribes_segments(client, speech_short, reference):
    audio, _ = speech_short
    expected = json.loads(reference(audio, "json"))
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(
            file=f, model=MODEL_NAME, response_format="verbose_json", timestamp_granularities=["segment"]
        )
    assert answer.language == "english"
    assert answer.duration == pytest.approx(expected["duration"])
    assert answer.text == expected["text"].strip()
    got = [(s.id, s.start, s.end, s.text, s.tokens, s.avg_logprob) for s in answer.segments]
    assert got == [
        (i, s["start"], s["end"], s["text"], s["tokens"], s["avg_logprob"])
        for i, s in enumerate(expected["segments"])
    ]
    assert len(got) >= 2  # two sentences, so the comparison covers segment boundaries


def _direct(transcriber, audio, **options):  # type: ignore[no-untyped-def]
    """What the server's own Transcriber gives for `audio` with these long-form options."""
    return transcriber.transcribe_batch([audio], options=dataclasses.replace(transcriber.options, **options))[
        0
    ]


def test_word_granularity_returns_the_words_dwkit_transcribe_finds(client, transcriber, speech_short):
    audio, _ = speech_short
    expected = _direct(transcriber, audio, word_timestamps=True)
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(
            file=f, model=MODEL_NAME, response_format="verbose_json", timestamp_granularities=["word"]
        )
    words = [w for s in expected.segments for w in s.words or []]
    assert words  # tiny.en hears the speech
    assert [(w.word, w.start, w.end) for w in answer.words] == [
        (w.word.strip(), w.start, w.end) for w in words
    ]


def test_a_prompt_reaches_the_decoder_as_the_initial_prompt(client, transcriber, speech_short):
    audio, _ = speech_short
    prompt = "Glossary: Ana Lopez, Grafana, Kubernetes."
    expected = _direct(transcriber, audio, initial_prompt=prompt)
    assert expected.segments != _direct(transcriber, audio).segments  # the prompt changes decoding
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(
            file=f, model=MODEL_NAME, response_format="verbose_json", prompt=prompt
        )
    assert [s.tokens for s in answer.segments] == [s.tokens for s in expected.segments]


def test_stream_sends_each_segment_as_it_finishes_then_the_text(client, speech_short, reference):
    audio, _ = speech_short
    expected = json.loads(reference(audio, "json"))
    with audio.open("rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model=MODEL_NAME, stream=True))
    deltas, done = events[:-1], events[-1]
    assert [e.type for e in deltas] == ["transcript.text.delta"] * len(expected["segments"])
    assert [e.delta for e in deltas] == [s["text"] for s in expected["segments"]]
    assert [(e.segment["start"], e.segment["end"]) for e in deltas] == [
        (s["start"], s["end"]) for s in expected["segments"]
    ]
    assert done.type == "transcript.text.done"
    assert done.text == expected["text"].strip() == "".join(e.delta for e in deltas).strip()


def test_language_given_as_english_is_the_same_request(client, speech_short, reference):
    audio, _ = speech_short
    with audio.open("rb") as f:
        answer = client.audio.transcriptions.create(file=f, model=MODEL_NAME, language="en", temperature=0)
    assert answer.text == reference(audio, "txt").strip()


def test_chunked_mode_answers_like_dwkit_transcribe_chunked(start_server, speech_short, reference):
    audio, _ = speech_short
    with start_server(mode="chunked") as url, audio.open("rb") as f:
        answer = make_client(url).audio.transcriptions.create(
            file=f, model=MODEL_NAME, response_format="text"
        )
    assert answer == reference(audio, "txt", "--mode", "chunked")
