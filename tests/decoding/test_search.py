"""The shared decoders: greedy equals transformers' generate; beam and sampling behave."""

import numpy as np
import pytest
import torch

from dwkit.audio import load_audio
from dwkit.decoding.options import DecodeOptions
from dwkit.features import log_mel
from dwkit.metrics import wer
from dwkit.runtimes import load
from dwkit.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def setup(tiny_en_dir, speech_short):
    backend = load(tiny_en_dir, "hf")
    mel = log_mel(load_audio(speech_short[0]), backend.info.n_mels)[None]
    return backend, backend.encode(mel), mel, Tokenizer.from_model_dir(tiny_en_dir), speech_short[1]


@pytest.mark.parametrize("timestamps", [False, True])
def test_greedy_equals_transformers_generate(setup, timestamps):
    backend, enc, mel, _, _ = setup
    info = backend.info
    prompt = [info.sot] if timestamps else [info.sot, info.no_timestamps]
    ours = backend.generate(enc, [prompt], DecodeOptions(without_timestamps=not timestamps))[0]
    theirs = backend.model.generate(torch.from_numpy(mel), return_timestamps=timestamps)[0].tolist()
    theirs = [t for t in theirs if t not in (info.eot, *prompt)]
    assert ours.tokens == theirs
    assert ours.finished and ours.avg_logprob < 0 and 0 <= ours.no_speech_prob < 0.5


def test_batch_rows_decode_independently(setup):
    backend, _, mel, _, _ = setup
    silence = log_mel(np.zeros(16000 * 5, dtype=np.float32), backend.info.n_mels)[None]
    enc = backend.encode(np.concatenate([mel, silence]))
    prompt = [backend.info.sot, backend.info.no_timestamps]
    opts = DecodeOptions(without_timestamps=True)
    both = backend.generate(enc, [prompt, prompt], opts)
    alone = backend.generate(backend.select(enc, [0]), [prompt], opts)[0]
    assert both[0].tokens == alone.tokens
    assert both[1].no_speech_prob > both[0].no_speech_prob


def test_beam_search_transcribes_and_scores(setup):
    backend, enc, _, tokenizer, spoken = setup
    prompt = [backend.info.sot, backend.info.no_timestamps]
    hyp = backend.generate(enc, [prompt], DecodeOptions(beam_size=4, without_timestamps=True))[0]
    assert hyp.finished and wer(spoken, tokenizer.decode(hyp.tokens)) < 0.2
    assert hyp.avg_logprob == pytest.approx(hyp.sum_logprob / (len(hyp.tokens) + 1))


def test_sampling_is_reproducible_with_a_seed(setup):
    backend, enc, _, _, _ = setup
    prompt = [backend.info.sot]
    runs = [
        backend.generate(enc, [prompt], DecodeOptions(temperature=1.0, seed=7))[0].tokens for _ in range(2)
    ]
    other = backend.generate(enc, [prompt], DecodeOptions(temperature=1.0, seed=8))[0].tokens
    assert runs[0] == runs[1]
    assert other != runs[0] or len(other) < 3


def test_max_new_tokens_stops_unfinished(setup):
    backend, enc, _, _, _ = setup
    hyp = backend.generate(enc, [[backend.info.sot]], DecodeOptions(max_new_tokens=3))[0]
    assert len(hyp.tokens) == 3 and not hyp.finished
