"""whisper.cpp model files run as whisper.cpp users hold them (a ggml-*.bin, no dwkit.json),
and imported back into transformers (`dwconvert --from ggml --to hf`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dwkit.errors import ConversionError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes import backend_of
from tests.interop import ggml_writer
from tests.interop.conftest import transcribe_text

TEXTS = (
    "The airport was crowded with families going on holiday.",
    " Hello world! It's 3.14159 -- isn't it? «ça va» 日本語 ♪♪ (naïve) [x]",
    "   spaces   and\ttabs\n\nnew lines ",
)


def _needs_whispercpp() -> None:
    from dwkit.runtimes import unavailable_reason

    reason = unavailable_reason("ggml")
    if reason:
        pytest.skip(reason)


def test_file_and_its_directory_are_recognised_and_described_like_the_checkpoint(
    ggml_tiny_en, tiny_en_dir
) -> None:  # type: ignore[no-untyped-def]
    from dwkit.converters.hf_files import default_alignment_heads

    assert backend_of(ggml_tiny_en) == "ggml" and backend_of(ggml_tiny_en.parent) == "ggml"
    info, reference = ModelInfo.from_model_dir(ggml_tiny_en), ModelInfo.from_model_dir(tiny_en_dir)
    # whisper.cpp files carry no alignment heads: the default every head-less source gets.
    assert info.alignment_heads == default_alignment_heads(reference.decoder_layers, reference.decoder_heads)
    info.alignment_heads = reference.alignment_heads
    assert info == reference  # suppression lists derived from the vocabulary, as OpenAI does


def test_tokenizer_from_the_file_vocabulary_encodes_and_decodes_like_the_real_one(
    ggml_tiny_en, tiny_en_dir
) -> None:  # type: ignore[no-untyped-def]
    from dwkit.tokenizer import Tokenizer

    info = ModelInfo.from_model_dir(tiny_en_dir)
    built, real = Tokenizer.from_model_dir(ggml_tiny_en, info), Tokenizer.from_model_dir(tiny_en_dir, info)
    for text in TEXTS:
        assert built.encode(text) == real.encode(text)
        assert built.decode(real.encode(text)) == real.decode(real.encode(text))


@pytest.mark.parametrize("n_vocab, tokenizer_dir", [(51864, "tiny.en"), (51865, "base")])
def test_special_tokens_follow_whisper_cpp_ids(n_vocab: int, tokenizer_dir: str) -> None:  # type: ignore[no-untyped-def]
    from dwkit.bundled import bundled_source
    from dwkit.foreign import whisper_cpp_tokens

    try:
        side = bundled_source(tokenizer_dir).side_dir
    except ModelError as exc:
        pytest.skip(str(exc))
    added = json.loads((side / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    # Released tokenizer.json files spell two tokens either way; the ids are what count.
    same = {"<|iw|>": "<|he|>", "<|nospeech|>": "<|nocaptions|>"}

    def names(tokens: list[str]) -> list[str]:
        return [same.get(token, token) for token in tokens]

    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"]) if not t["content"][2:3].isdigit()]
    assert names(whisper_cpp_tokens(n_vocab)) == names(specials)
    large_v3 = whisper_cpp_tokens(51866)  # <|yue|> added: the task tokens shift by one
    assert (
        50257 + large_v3.index("<|transcribe|>") == 50360
        and 50257 + large_v3.index("<|notimestamps|>") == 50364
    )
    assert large_v3[101] == "<|yue|>" and "<|nospeech|>" in large_v3


def test_whisper_cpp_runs_the_file_like_transformers(ggml_tiny_en, speech_short, hf_short_text) -> None:  # type: ignore[no-untyped-def]
    _needs_whispercpp()
    assert transcribe_text(ggml_tiny_en, speech_short[0], flash_attn=False) == hf_short_text


def test_a_directory_with_two_files_names_both(ggml_tiny_en, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("ggml-a.bin", "ggml-b.bin"):
        (tmp_path / name).symlink_to(ggml_tiny_en)
    with pytest.raises(
        ModelError, match=r"2 whisper\.cpp model files \(ggml-a\.bin, ggml-b\.bin\); point --model"
    ):
        backend_of(tmp_path)


def test_hub_ids_resolve_offline_from_the_hub_cache(ggml_tiny_en, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    from dwkit.config import Config

    repo = tmp_path / "hub" / "models--distil-whisper--distil-large-v3.5-ggml"
    (repo / "snapshots" / ("1" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("1" * 40) / "ggml-model.bin").symlink_to(ggml_tiny_en)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = Config(model="distil-whisper/distil-large-v3.5-ggml")
    model = config.resolve_model()
    config.check(model)
    assert config.resolved_backend == "ggml"
    assert ModelInfo.from_model_dir(model).vocab_size == 51864


def test_parity_candidates_take_the_file_at_its_own_precision(ggml_tiny_en) -> None:  # type: ignore[no-untyped-def]
    from dwkit.parity.candidates import Candidate

    assert Candidate.parse(f"ggml:{ggml_tiny_en}").resolve_precision() == "f16"


def test_dwkit_info_names_the_file(ggml_tiny_en, capsys) -> None:  # type: ignore[no-untyped-def]
    from dwkit.cli.main import entry as dwkit

    assert dwkit(["info", str(ggml_tiny_en)]) == 0
    out = capsys.readouterr().out
    assert "format      ggml (precision f16)" in out and "whisper.cpp model file ggml-tiny.en.bin" in out


# --- dwconvert --from ggml --to hf -------------------------------------------------------------


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _side_files(model_dir: Path) -> dict[str, object]:
    gen = json.loads((model_dir / "generation_config.json").read_text())
    gen.pop("alignment_heads")  # whisper.cpp files carry none
    config = json.loads((model_dir / "config.json").read_text())
    return {"config": config, "generation": gen, "info": ModelInfo.from_model_dir(model_dir).vocab_size}


@pytest.mark.slow
def test_f32_round_trip_is_bit_for_bit(tiny_en_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dwkit.cli.dwconvert import entry as dwconvert

    source = ggml_writer.write_ggml(tiny_en_dir, tmp_path / "ggml-f32.bin", use_f16=False)
    assert dwconvert(["--from", "ggml", "--to", "hf", str(source), str(tmp_path / "back")]) == 0
    original, back = _weights(tiny_en_dir), _weights(tmp_path / "back")
    assert set(back) == set(original)
    assert all(np.array_equal(back[name], original[name]) for name in original)
    assert _side_files(tmp_path / "back") == _side_files(tiny_en_dir)
    source.unlink()
    shutil.rmtree(tmp_path / "back")


@pytest.fixture(scope="module")
def f16_back(ggml_tiny_en, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The import `dwkit bench --model FILE` runs from (cached per file version)."""
    from dwkit.foreign import as_transformers_checkpoint

    cache = tmp_path_factory.mktemp("cache")
    back = as_transformers_checkpoint(ggml_tiny_en, cache)
    assert as_transformers_checkpoint(ggml_tiny_en, cache) == back  # imported once
    return back


def test_f16_round_trip_keeps_f16_precision(f16_back, tiny_en_dir) -> None:  # type: ignore[no-untyped-def]
    from dwkit.manifest import read_manifest

    assert read_manifest(f16_back)["source"]["precision"] == "f16"
    original, back = _weights(tiny_en_dir), _weights(f16_back)
    assert set(back) == set(original)
    for name, value in original.items():  # 1-D tensors and positional tables stay float32 in the file
        expected = value if value.ndim < 2 or "embed_positions" in name else value.astype(np.float16)
        np.testing.assert_array_equal(back[name], expected.astype(np.float32), err_msg=name)


@pytest.mark.slow
def test_f16_round_trip_gives_transformers_the_same_logits(f16_back, tiny_en_dir) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import WhisperForConditionalGeneration

    mel = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32))
    prompt = torch.tensor([[50257, 50362]])
    with torch.no_grad():
        logits = [
            WhisperForConditionalGeneration.from_pretrained(str(d))
            .eval()(mel, decoder_input_ids=prompt)
            .logits
            for d in (tiny_en_dir, f16_back)
        ]
    assert float((logits[0] - logits[1]).abs().max()) < 1e-4


@pytest.mark.slow
def test_quantised_files_are_dequantised_within_their_block_precision(tiny_en_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dwkit.converters.ggml_import import import_ggml

    source = ggml_writer.write_ggml(tiny_en_dir, tmp_path / "ggml-q8_0.bin", quantise="q8_0")
    result = import_ggml(source, tmp_path / "back")
    assert result.manifest["source"]["dequantised"] == ["q8_0"]
    original, back = _weights(tiny_en_dir), _weights(tmp_path / "back")
    name = "model.decoder.layers.0.fc1.weight"
    step = np.abs(original[name]).reshape(-1, 32).max(axis=1, keepdims=True) / 127  # one q8_0 block's scale
    error = np.abs(back[name] - original[name]).reshape(-1, 32)
    assert 0 < error.max() and np.all(error <= step * 0.6 + 1e-7)  # half a step, plus the f16 scale


def test_not_a_whisper_cpp_file_is_one_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dwkit.converters.ggml_import import import_ggml

    (tmp_path / "model.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ConversionError, match="not a whisper.cpp model file"):
        import_ggml(tmp_path / "model.bin", tmp_path / "out")
    assert not (tmp_path / "out").exists()
