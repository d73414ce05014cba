"""The shared logit rules make exactly transformers' Whisper logits processors' choices."""

import numpy as np
import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    WhisperTimeStampLogitsProcessor,
)

from dwkit.decoding.options import DecodeOptions
from dwkit.decoding.rules import LogitRules, no_speech_probs
from dwkit.model_info import ModelInfo


@pytest.fixture(scope="module")
def info(base_dir) -> ModelInfo:
    return ModelInfo.from_hf_dir(base_dir)


def _histories(info: ModelInfo, rng: np.random.Generator) -> list[list[int]]:
    ts = info.timestamp_begin
    return [
        [],  # first step: must be a timestamp within max_initial_timestamp
        [ts],  # opening timestamp: text or closing timestamp only
        [ts, 400, 500],
        [ts, 400, ts + 30],  # single closed: close pair or end
        [ts, 400, ts + 30, ts + 30],  # pair closed: text must follow
        [ts + 10, 300, 301, 302, ts + 80, ts + 80, 700],
        list(rng.integers(0, 50000, size=12)),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_timestamp_and_suppress_rules_match_transformers(info, seed):
    rng = np.random.default_rng(seed)
    prompt = [info.sot, info.lang_to_id["<|en|>"], info.transcribe]
    gen = GenerationConfig(
        no_timestamps_token_id=info.no_timestamps, eos_token_id=info.eot, max_initial_timestamp_index=50
    )
    processors = [
        SuppressTokensAtBeginLogitsProcessor(info.begin_suppress_tokens, begin_index=len(prompt)),
        SuppressTokensLogitsProcessor(info.suppress_tokens),
        WhisperTimeStampLogitsProcessor(gen, begin_index=len(prompt)),
    ]
    rules = LogitRules(info, DecodeOptions(), len(prompt))
    for history in _histories(info, rng):
        tokens = np.array([prompt + [int(t) for t in history]], dtype=np.int64)
        # random logits, with the timestamp mass sometimes dominant
        logits = rng.standard_normal((1, info.vocab_size)).astype(np.float32) * 3
        logits[0, info.timestamp_begin :] += rng.choice([-5.0, 0.0, 4.0])
        expected = torch.from_numpy(logits.copy())
        ids = torch.from_numpy(tokens)
        for proc in processors:
            expected = proc(ids, expected)
        ours = logits.copy()
        rules.apply(tokens, ours)
        assert np.array_equal(np.isneginf(ours), torch.isneginf(expected).numpy()), history
        assert ours.argmax() == int(expected.argmax())


def test_without_timestamps_only_suppresses(info):
    rules = LogitRules(info, DecodeOptions(without_timestamps=True, suppress_blank=False), 4)
    logits = np.zeros((1, info.vocab_size), dtype=np.float32)
    rules.apply(np.zeros((1, 4), dtype=np.int64), logits)
    assert set(np.flatnonzero(np.isneginf(logits[0]))) == set(info.suppress_tokens)


def test_no_speech_probability_reads_the_sot_position(info):
    logits = np.zeros((2, 3, info.vocab_size), dtype=np.float32)
    logits[0, 0, info.no_speech] = 20.0  # at sot: confident silence
    logits[1, 2, info.no_speech] = 20.0  # elsewhere: ignored
    probs = no_speech_probs(logits, 0, info)
    assert probs[0] > 0.99 and probs[1] < 0.01
