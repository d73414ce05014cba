"""Word timestamps on real weights match transformers' `pipeline(..., return_timestamps="word")`:
the same words, and start and end within 0.1 s on at least 95% of them (issue 15), on the hf
backend and on CTranslate2's native aligner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.longform.options import LongformOptions  # noqa: E402
from dwkit.parity.measures import word_agreement  # noqa: E402
from dwkit.results import Transcript, Word  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402

TOLERANCE_S = 0.1
TIME_SHARE_MIN = 0.95
# transformers' own algorithm, greedy, no fallback: both sides decode the same tokens.
EXACT = dict(
    exact_transformers=True,
    temperatures=(0.0,),
    compression_ratio_threshold=None,
    logprob_threshold=None,
    no_speech_threshold=None,
    word_timestamps=True,
)


def pipeline_words(model_dir: Path, audio: np.ndarray, **kwargs) -> list[Word]:  # type: ignore[no-untyped-def]
    """transformers' ASR pipeline with word timestamps (greedy), as dwkit Words."""
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=str(model_dir), **kwargs)
    out = pipe(audio.copy(), return_timestamps="word", generate_kwargs={"num_beams": 1})
    return [Word(c["timestamp"][0], c["timestamp"][1], c["text"], 0.0) for c in out["chunks"]]


def words_of(transcript: Transcript) -> list[Word]:
    return [w for s in transcript.segments for w in s.words or []]


def assert_words_match(reference: list[Word], ours: list[Word]) -> None:
    agreement = word_agreement([reference], [ours], TOLERANCE_S)
    assert [w.word for w in ours] == [w.word for w in reference]
    assert agreement["time_share"] >= TIME_SHARE_MIN, agreement


def assert_well_formed(transcript: Transcript, per_segment: bool = True) -> None:
    """Words in order with sane probabilities; per_segment (sequential mode): each segment's
    words join to its text and sit inside its times (chunked mode hands merged segments
    their words by time instead)."""
    for segment in transcript.segments:
        assert all(0.0 < w.probability <= 1.0 and w.start <= w.end for w in segment.words)
        if per_segment:
            assert "".join(w.word for w in segment.words) == segment.text
            assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
    starts = [w.start for w in words_of(transcript)]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def short_audio(speech_short) -> np.ndarray:  # type: ignore[no-untyped-def]
    return load_audio(speech_short[0])


@pytest.fixture(scope="module")
def tiny_reference(tiny_en_dir: Path, short_audio: np.ndarray) -> list[Word]:
    return pipeline_words(tiny_en_dir, short_audio)


@pytest.fixture(scope="module")
def tiny_hf_transcriber(tiny_en_dir: Path) -> Transcriber:
    return Transcriber.from_model_dir(tiny_en_dir, "hf", options=LongformOptions(**EXACT))


@pytest.fixture(scope="module")
def tiny_hf(tiny_hf_transcriber: Transcriber, short_audio: np.ndarray) -> Transcript:
    return tiny_hf_transcriber.transcribe(short_audio)


def test_hf_words_match_transformers_pipeline(tiny_reference, tiny_hf):
    assert_words_match(tiny_reference, words_of(tiny_hf))
    assert_well_formed(tiny_hf)


def test_ct2_words_match_transformers_pipeline_and_the_hf_backend(
    tiny_en_dir, dwkit_cache, short_audio, tiny_reference, tiny_hf
):
    pytest.importorskip("ctranslate2")
    from tests.converters.test_ct2 import converted

    ct2_dir = converted(tiny_en_dir, "float32", dwkit_cache, validate=True)
    ours = Transcriber.from_model_dir(ct2_dir, "ct2", options=LongformOptions(**EXACT)).transcribe(
        short_audio
    )
    assert_words_match(tiny_reference, words_of(ours))
    assert_well_formed(ours)
    # CTranslate2's native DTW and the shared one agree on the same model
    both = word_agreement([words_of(tiny_hf)], [words_of(ours)], 0.02)
    assert both["match_rate"] == 1.0 and both["time_share"] == 1.0, both


def test_words_are_off_unless_asked(tiny_hf_transcriber, short_audio):
    plain = LongformOptions(**dict(EXACT, word_timestamps=False))
    t = tiny_hf_transcriber
    transcript = Transcriber(t.backend, t.tokenizer, plain).transcribe(short_audio)
    assert transcript.segments and all(s.words is None for s in transcript.segments)


@pytest.mark.slow
def test_multilingual_base_words_match_transformers_pipeline(base_dir, short_audio):
    reference = pipeline_words(base_dir, short_audio)
    opts = LongformOptions(language="en", **EXACT)
    ours = Transcriber.from_model_dir(base_dir, "hf", options=opts).transcribe(short_audio)
    assert_words_match(reference, words_of(ours))
    assert_well_formed(ours)


@pytest.mark.slow
def test_long_form_words_sequential_and_chunked(tiny_en_dir, speech_long):
    """Over several windows / chunks: the words join to the text, stay in order and inside
    the audio; chunked words agree with the pipeline's chunked word timestamps."""
    audio = load_audio(speech_long[0])
    for mode in ("sequential", "chunked"):
        opts = LongformOptions(mode=mode, **EXACT)
        transcript = Transcriber.from_model_dir(tiny_en_dir, "hf", options=opts).transcribe(audio)
        assert_well_formed(transcript, per_segment=mode == "sequential")
        assert words_of(transcript)[-1].end <= transcript.duration
    reference = pipeline_words(tiny_en_dir, audio, chunk_length_s=opts.chunk_length_s, batch_size=8)
    agreement = word_agreement([reference], [words_of(transcript)], TOLERANCE_S)
    assert agreement["match_rate"] >= 0.95 and agreement["time_share"] >= 0.9, agreement


@pytest.mark.slow
def test_cli_writes_words_to_json_and_cuts_subtitles_by_words(tiny_en_dir, speech_short, tmp_path, capsys):
    from dwkit.cli.main import entry as dwkit

    path = str(speech_short[0])
    out = tmp_path / "t.srt"
    args = ["transcribe", path, "--model", str(tiny_en_dir), "--backend", "hf", "--word-timestamps"]
    assert dwkit([*args, "-f", "srt", "--max-words-per-line", "3", "-o", str(out)]) == 0
    cues = [block.split("\n")[2] for block in out.read_text().strip().split("\n\n")]
    assert len(cues) > 4 and all(1 <= len(cue.split()) <= 3 for cue in cues)
    assert dwkit([*args, "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    words = [w for s in data["segments"] for w in s["words"]]
    assert words and all(set(w) == {"start", "end", "word", "probability"} for w in words)
    assert "".join(w["word"] for w in words) == data["text"]
