"""Word timestamps: the shared DTW and grouping against the libraries they reproduce, the
alignment-head fallback of distilled students, and how words reach JSON and subtitles."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from dwkit.alignment import alignment_heads, alignment_matrix, dtw, median_filter
from dwkit.alignment_words import distribute_words, owned_words, split_to_word_tokens
from dwkit.longform.options import LongformOptions
from dwkit.model_info import ModelInfo
from dwkit.results import Segment, Transcript, Word
from dwkit.tokenizer import Tokenizer
from dwkit.writers import render


def test_dtw_takes_transformers_path_on_random_costs():
    whisper = pytest.importorskip("transformers.models.whisper.generation_whisper")
    rng = np.random.default_rng(0)
    costs = [rng.standard_normal(shape) for shape in [(1, 1), (3, 40), (17, 9), (12, 60)]]
    costs += [rng.integers(0, 3, (20, 60)).astype(float), np.zeros((5, 9))]  # ties: the tie-breaking
    for cost in costs:
        theirs = whisper._dynamic_time_warping(cost)
        ours = dtw(cost)
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_median_filter_and_matrix_equal_transformers():
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("transformers.models.whisper.generation_whisper")
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 11, 50)).astype(np.float32)
    theirs = whisper._median_filter(torch.from_numpy(x), 7).numpy()
    assert np.allclose(median_filter(x, 7), theirs)
    weights = rng.random((4, 6, 1500))
    w = torch.from_numpy(weights[..., :40])
    w = (w - w.mean(dim=-2, keepdim=True)) / w.std(dim=-2, keepdim=True, unbiased=False)
    expected = whisper._median_filter(w, 7).mean(dim=0).numpy()
    assert np.allclose(alignment_matrix(weights, num_frames=81), expected)  # 81 mel frames -> 40


def _info(layers: int, heads: int, given: list[list[int]]) -> ModelInfo:
    return ModelInfo(
        n_mels=80, vocab_size=51865, d_model=64, encoder_layers=2, decoder_layers=layers,
        encoder_heads=heads, decoder_heads=heads, ffn_dim=256, n_audio_ctx=1500, n_text_ctx=448,
        multilingual=False, eot=50256, sot=50257, sot_prev=50360, no_timestamps=50362,
        alignment_heads=given,
    )  # fmt: skip


def test_alignment_heads_from_the_config_when_they_exist():
    assert alignment_heads(_info(4, 6, [[2, 3], [3, 0]])) == [(2, 3), (3, 0)]


@pytest.mark.parametrize("given", [[], [[31, 0], [30, 5]], [[1, 0], [1, 9]]])
def test_missing_or_impossible_heads_fall_back_to_the_last_layer_with_one_warning(given, caplog, monkeypatch):
    monkeypatch.setattr("dwkit.alignment._warned", set())
    info = _info(2, 4, given)
    with caplog.at_level(logging.WARNING, logger="dwkit.alignment"):
        first = alignment_heads(info)
        second = alignment_heads(info)
    assert first == second == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert len([r for r in caplog.records if "last decoder layer" in r.message]) == 1


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_en_dir: Path) -> Tokenizer:
    return Tokenizer.from_model_dir(tiny_en_dir)


def test_words_merge_punctuation_like_openai(tiny_tokenizer):
    tokens = tiny_tokenizer.encode(' "Hello, world!" he said (twice).')
    words, groups = split_to_word_tokens(tiny_tokenizer, tokens, "en")
    # '!"' is one token, not a closing mark of the list, so it stays a word (OpenAI's rule too)
    assert words == [' "Hello,', " world", '!"', " he", " said", " (twice)."]
    assert [t for g in groups for t in g] == tokens


def test_words_match_transformers_grouping(tiny_en_dir, tiny_tokenizer):
    whisper = pytest.importorskip("transformers.models.whisper.tokenization_whisper")
    from transformers import WhisperTokenizerFast

    theirs = WhisperTokenizerFast.from_pretrained(tiny_en_dir)
    text = " It's 5 o'clock - the \"fast\" train, isn't it? Yes: it (really) is."
    tokens = tiny_tokenizer.encode(text)
    words, _ = split_to_word_tokens(tiny_tokenizer, tokens, "en")
    expected, _, _ = whisper._combine_tokens_into_words(theirs, tokens, "english")
    assert words == expected


def test_languages_without_spaces_split_on_characters(base_dir):
    whisper = pytest.importorskip("transformers.models.whisper.tokenization_whisper")
    from transformers import WhisperTokenizerFast

    tokenizer = Tokenizer.from_model_dir(base_dir)
    text = "我们今天去公园。東京駅で会いましょう！"
    tokens = tokenizer.encode(text)
    words, groups = split_to_word_tokens(tokenizer, tokens, "zh")
    assert "".join(words) == text and all("\ufffd" not in w for w in words)
    assert [t for g in groups for t in g] == tokens
    assert any(len(g) > 1 for g in groups)  # a character spread over byte tokens stays whole
    assert words[-1].endswith("！") and "园。" in words  # closing marks join the character before
    theirs = WhisperTokenizerFast.from_pretrained(base_dir)
    assert words == whisper._combine_tokens_into_words(theirs, tokens, "chinese")[0]
    assert split_to_word_tokens(tokenizer, tokens, "ja")[0] == words


def test_chunk_words_are_kept_once_outside_the_strides_and_go_to_their_segment():
    chunk = [Segment(0.0, 10.0, " a b c", words=[Word(1.0, 1.5, " a", 0.9), Word(8.6, 9.4, " c", 0.8)])]
    kept = owned_words(chunk, offset_s=20.0, own_from=20.0, own_to=28.0)
    assert [(w.start, w.word) for w in kept] == [(21.0, " a")]  # " c" (29.0 s) is the next chunk's
    merged = [Segment(20.0, 22.0, " x"), Segment(25.0, 30.0, " y")]
    distribute_words(merged, kept + [Word(23.0, 23.4, " gap", 1.0), Word(26.0, 26.5, " in", 1.0)])
    assert [w.word for w in merged[0].words] == [" a", " gap"]
    assert [w.word for w in merged[1].words] == [" in"]


def _timed_transcript() -> Transcript:
    words = [Word(0.0, 0.4, " One", 0.9), Word(0.4, 0.8, " two", 0.8), Word(0.9, 1.5, " three.", 0.7)]
    return Transcript(" One two three.", "en", 2.0, [Segment(0.0, 1.6, " One two three.", words=words)])


def test_subtitles_cut_by_words():
    srt = render(_timed_transcript(), "srt", max_words_per_line=2)
    assert srt == "1\n00:00:00,000 --> 00:00:00,800\nOne two\n\n2\n00:00:00,900 --> 00:00:01,500\nthree.\n"
    vtt = render(_timed_transcript(), "vtt", max_words_per_line=5)
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nOne two three.\n"
    assert render(_timed_transcript(), "srt") == "1\n00:00:00,000 --> 00:00:01,600\nOne two three.\n"


def test_json_carries_words_only_when_asked():
    data = json.loads(render(_timed_transcript(), "json"))
    assert data["segments"][0]["words"][2] == {
        "start": 0.9,
        "end": 1.5,
        "word": " three.",
        "probability": 0.7,
    }
    plain = Transcript(" x", "en", 1.0, [Segment(0.0, 1.0, " x")])
    assert "words" not in json.loads(render(plain, "json"))["segments"][0]


def test_word_timestamps_option_reaches_config_env_and_flag():
    from dwkit.config import Config

    assert Config.from_dict({"longform": {"word_timestamps": True}}, check=False).longform.word_timestamps
    env = {"DWKIT_LONGFORM__WORD_TIMESTAMPS": "true"}
    assert Config.from_dict({}, env=env, check=False).longform.word_timestamps
    assert not LongformOptions().word_timestamps


@pytest.fixture(scope="module")
def student_with_teacher_heads(random_distil128_dir: Path, tmp_path_factory) -> Path:
    """The random 2-decoder-layer model with a 32-layer teacher's heads in its config (the
    distil-large-v3 case): heads that point at decoder layers it does not have."""
    out = tmp_path_factory.mktemp("student") / "model"
    shutil.copytree(random_distil128_dir, out)
    teacher_heads = [[31, 0], [30, 3], [27, 1]]
    gen = json.loads((out / "generation_config.json").read_text())
    gen["alignment_heads"] = teacher_heads
    (out / "generation_config.json").write_text(json.dumps(gen))
    manifest = out / "dwkit.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data.get("model_info", {})["alignment_heads"] = teacher_heads
        manifest.write_text(json.dumps(data))
    return out


def _student_words(model_dir: Path, backend: str) -> Transcript:
    from dwkit.decoding.options import DecodeOptions
    from dwkit.transcriber import Transcriber

    opts = LongformOptions(
        word_timestamps=True, language="en", temperatures=(0.0,), decode=DecodeOptions(max_new_tokens=12)
    )
    audio = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    return Transcriber.from_model_dir(model_dir, backend, options=opts).transcribe(audio)


def _assert_timed(transcript: Transcript) -> None:
    assert transcript.segments and all(s.words is not None for s in transcript.segments)
    text_segments = [s for s in transcript.segments if s.text.strip()]
    assert text_segments and all(s.words for s in text_segments)
    for segment in text_segments:
        assert "".join(w.word for w in segment.words) == segment.text
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
        assert all(0.0 <= w.probability <= 1.0 for w in segment.words)


def test_student_with_its_teachers_heads_gets_words_from_its_last_layer(
    student_with_teacher_heads, caplog, monkeypatch
):
    pytest.importorskip("torch")
    monkeypatch.setattr("dwkit.alignment._warned", set())
    with caplog.at_level(logging.WARNING, logger="dwkit.alignment"):
        transcript = _student_words(student_with_teacher_heads, "hf")
    _assert_timed(transcript)
    assert any("point past its 2 decoder layers" in r.message for r in caplog.records)
    assert alignment_heads(ModelInfo.from_hf_dir(student_with_teacher_heads)) == [(1, h) for h in range(4)]


def test_ct2_student_with_its_teachers_heads_aligns_instead_of_crashing(student_with_teacher_heads, tmp_path):
    """CTranslate2's align reads past its layers (a segfault, measured) with such heads in the
    converted config.json: the backend aligns with the fallback heads instead."""
    pytest.importorskip("ctranslate2")
    from dwkit.converters import convert

    out = tmp_path / "student-ct2"
    convert(student_with_teacher_heads, out, "ct2", "float32", validate=False)
    assert json.loads((out / "config.json").read_text())["alignment_heads"][0] == [31, 0]
    _assert_timed(_student_words(out, "ct2"))
