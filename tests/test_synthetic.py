"""Seeded random models: exact configured shapes, large-v3 vocabulary ids, reproducible weights."""

from __future__ import annotations

import json

import pytest

from dwkit.converters.hf_files import WhisperVocab
from dwkit.errors import ConfigError
from dwkit.manifest import read_manifest, weights_checksum
from dwkit.model_info import ModelInfo
from dwkit.synthetic import PRESETS, make_random_model, random_model, tokenizer_for


def _load(model_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    return (
        WhisperForConditionalGeneration.from_pretrained(model_dir).eval(),
        WhisperProcessor.from_pretrained(model_dir),
    )


@pytest.mark.parametrize(
    ("fixture", "n_mels", "vocab", "d_model", "layers"),
    [
        ("random_tiny80_dir", 80, 51865, 384, (4, 4)),
        ("random_distil128_dir", 128, 51866, 256, (4, 2)),
    ],
)
def test_random_models_load_with_the_configured_shapes(fixture, n_mels, vocab, d_model, layers, request):
    import torch

    model_dir = request.getfixturevalue(fixture)
    model, processor = _load(model_dir)
    config = model.config
    assert (config.num_mel_bins, config.vocab_size, config.d_model) == (n_mels, vocab, d_model)
    assert (config.encoder_layers, config.decoder_layers) == layers
    assert model.model.encoder.conv1.weight.shape == (d_model, n_mels, 3)
    assert model.proj_out.weight.shape == (vocab, d_model)
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert len(processor.tokenizer) == vocab
    assert processor.feature_extractor.feature_size == n_mels
    features = torch.zeros(1, n_mels, 3000)
    with torch.inference_mode():
        logits = model(input_features=features, decoder_input_ids=torch.tensor([[50258]])).logits
    assert logits.shape == (1, 1, vocab) and torch.isfinite(logits).all()
    info = ModelInfo.from_hf_dir(model_dir)
    assert ModelInfo.from_dict(read_manifest(model_dir)["model_info"]) == info
    assert read_manifest(model_dir)["source"]["kind"] == "random"


def test_tiny80_uses_the_multilingual_base_vocabulary(random_tiny80_dir):
    info = ModelInfo.from_hf_dir(random_tiny80_dir)
    assert (info.eot, info.sot, info.translate, info.transcribe) == (50257, 50258, 50358, 50359)
    assert (info.sot_prev, info.no_timestamps, len(info.lang_to_id)) == (50361, 50363, 99)


def test_distil128_has_the_large_v3_vocabulary(random_distil128_dir):
    info = ModelInfo.from_hf_dir(random_distil128_dir)
    assert (info.eot, info.sot) == (50257, 50258)
    assert len(info.lang_to_id) == 100 and info.lang_to_id["<|yue|>"] == 50358
    assert info.lang_to_id["<|en|>"] == 50259 and info.lang_to_id["<|su|>"] == 50357
    assert (info.translate, info.transcribe, info.sot_prev) == (50359, 50360, 50362)
    assert (info.no_speech, info.no_timestamps, info.timestamp_begin) == (50363, 50364, 50365)
    gen = json.loads((random_distil128_dir / "generation_config.json").read_text())
    assert gen["forced_decoder_ids"] == [[1, None], [2, 50360]]
    assert gen["task_to_id"] == {"transcribe": 50360, "translate": 50359}
    assert {50258, 50359, 50360, 50361, 50362, 50363} <= set(gen["suppress_tokens"])
    from transformers import WhisperTokenizer, WhisperTokenizerFast

    for cls in (WhisperTokenizer, WhisperTokenizerFast):
        tokenizer = cls.from_pretrained(random_distil128_dir)
        assert tokenizer.convert_ids_to_tokens([50358, 50363, 50364, 50365, 51865]) == [
            "<|yue|>",
            "<|nospeech|>",
            "<|notimestamps|>",
            "<|0.00|>",
            "<|30.00|>",
        ]
        assert tokenizer.all_special_ids[-1] == 50364


def test_large_v3_tokenizer_keeps_text_ids():
    base, v3 = tokenizer_for(51865), tokenizer_for(51866)
    assert base["model"]["vocab"] == v3["model"]["vocab"]
    assert WhisperVocab.from_tokenizer_json(v3).vocab_size == 51866
    assert v3["post_processor"]["special_tokens"]["<|notimestamps|>"]["ids"] == [50364]


def test_same_seed_same_weights_and_caller_rng_untouched(random_distil128_dir, tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = make_random_model("distil-128", tmp_path / "s0", seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert weights_checksum(again) == weights_checksum(random_distil128_dir)
    other = make_random_model("distil-128", tmp_path / "s1", seed=1)
    assert weights_checksum(other) != weights_checksum(again)


def test_cached_random_model_is_reused(random_tiny80_dir, dwkit_cache):
    before = (random_tiny80_dir / "model.safetensors").stat().st_mtime_ns
    assert random_model("tiny-80", cache_dir=dwkit_cache) == random_tiny80_dir
    assert (random_tiny80_dir / "model.safetensors").stat().st_mtime_ns == before


def test_unknown_preset_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="distil-large-v3.5"):
        make_random_model("huge", tmp_path / "x")


def test_distil_large_v3_5_preset_matches_the_real_architecture():
    """Checked on the meta device: no 3 GB of weights in the test suite."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from dwkit.converters.hf_files import whisper_config

    dims = PRESETS["distil-large-v3.5"]
    config = whisper_config(dims, WhisperVocab.from_tokenizer_json(tokenizer_for(51866)))
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (1280, 32, 2)
    assert (config.encoder_attention_heads, config.encoder_ffn_dim, config.num_mel_bins) == (20, 5120, 128)
    assert (config.max_source_positions, config.max_target_positions, config.vocab_size) == (1500, 448, 51866)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    params = sum(p.numel() for p in model.parameters())
    assert 750e6 < params < 760e6  # distil-large-v3.5: 756M
