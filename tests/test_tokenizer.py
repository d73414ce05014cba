"""The tokenizer decodes exactly like transformers' WhisperTokenizer(skip_special_tokens=True)."""

import pytest
from transformers import WhisperTokenizerFast

from dwkit.errors import ModelError
from dwkit.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def pair(base_dir):
    return Tokenizer.from_model_dir(base_dir), WhisperTokenizerFast.from_pretrained(base_dir)


def test_decode_drops_special_and_timestamp_tokens_like_transformers(pair):
    ours, theirs = pair
    info = ours.info
    text_ids = theirs.encode(" Hello world, it's a test.", add_special_tokens=False)
    seq = [info.sot, info.lang_to_id["<|en|>"], info.transcribe, info.timestamp_begin] + text_ids
    seq += [info.timestamp_begin + 50, info.timestamp_begin + 50] + text_ids + [info.eot]
    assert ours.decode(seq) == theirs.decode(seq, skip_special_tokens=True)
    assert "<|" not in ours.decode(seq)


def test_encode_round_trips(pair):
    ours, _ = pair
    assert ours.decode(ours.encode(" The weather is nice today.")) == " The weather is nice today."


def test_language_tokens_by_code_and_name(pair):
    ours, _ = pair
    assert ours.language_token("en") == ours.language_token("English") == ours.info.lang_to_id["<|en|>"]
    assert ours.language_of(ours.info.lang_to_id["<|fr|>"]) == "fr"
    with pytest.raises(ModelError, match="not supported"):
        ours.language_token("klingon")


def test_english_only_model_has_no_languages(tiny_en_dir):
    tok = Tokenizer.from_model_dir(tiny_en_dir)
    assert not tok.info.multilingual and tok.info.eot == 50256
    with pytest.raises(ModelError, match="English-only"):
        tok.language_token("fr")


def test_decode_with_timestamps_marks_times(pair):
    ours, _ = pair
    ts = ours.info.timestamp_begin
    assert ours.decode_with_timestamps([ts, *ours.encode(" Hi"), ts + 100]) == "<|0.00|> Hi<|2.00|>"
