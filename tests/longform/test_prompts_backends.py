"""One prompt case on every backend that runs here (hf, ct2, onnx, ggml: the contract suite's
models, tiny.en in each format): the initial prompt and the forced prefix reach each backend's
decoder as the same tokens, and each transcript starts with the prefix and goes on with the speech."""

from __future__ import annotations

import pytest

from dwkit import runtimes
from dwkit.audio import load_audio
from dwkit.longform.options import LongformOptions
from dwkit.tokenizer import Tokenizer
from dwkit.transcriber import Transcriber
from tests.longform.test_prompts import recording
from tests.runtimes.test_contract import _model_dir


@pytest.mark.parametrize("name", [n for n in runtimes.names() if not runtimes.spec(n).gpu_only])
def test_prompt_and_prefix_on_every_backend(name, tiny_en_dir, dwkit_cache, speech_short, simple_wer):
    reason = runtimes.unavailable_reason(name, "cpu")
    if reason:
        pytest.skip(f"{name} cannot run here: {reason}")
    model_dir = _model_dir(runtimes.spec(name), tiny_en_dir, dwkit_cache)
    loaded = Transcriber.from_model_dir(model_dir, name)
    try:
        transcriber, backend = recording(loaded)
        tok: Tokenizer = loaded.tokenizer
        opts = LongformOptions(initial_prompt="Railway news.", prefix="The train")
        result = transcriber.transcribe_batch([load_audio(speech_short[0])], options=opts)[0]
    finally:
        loaded.backend.close()
    info = tok.info
    prompt = [info.sot_prev, *tok.text_tokens("Railway news.", "p")]
    assert backend.prompts[0] == [*prompt, info.sot, info.timestamp_begin, *tok.text_tokens("The train", "p")]
    assert result.text.startswith(" The train to the coast")
    assert simple_wer(speech_short[1], result.text) < 0.2
