"""transformers -> whisper.cpp (ggml): the file parses back as written, real whisper.cpp loads
every precision and transcribes with it, validation is recorded, failures leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dwkit.converters import convert, ggml, ggml_format
from dwkit.converters.ggml_format import GGML_TYPES, read_ggml
from dwkit.errors import BackendUnavailable, ConversionError, ValidationError
from dwkit.features import mel_filters
from dwkit.manifest import read_manifest
from dwkit.model_info import ModelInfo

pytest.importorskip("gguf")
pytest.importorskip("pywhispercpp")


def _convert(source: Path, out: Path, precision: str, **kwargs):
    return convert(source, out, "ggml", precision, validate=kwargs.pop("validate", False), **kwargs)


def _source_tensor(model_dir: Path, name: str) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))[name]


def _config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


# --- file layout -----------------------------------------------------------------------------


def test_f16_file_parses_back_with_whisper_cpp_names_shapes_and_types(random_tiny80_dir, tmp_path):
    _convert(random_tiny80_dir, tmp_path / "m", "f16")
    f = read_ggml(tmp_path / "m" / ggml.MODEL_FILE)
    cfg = _config(random_tiny80_dir)
    assert f.hparams == {
        "n_vocab": 51865, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
        "n_audio_layer": 4, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6,
        "n_text_layer": 4, "n_mels": 80, "ftype": 1,
    }  # fmt: skip
    assert cfg["encoder_attention_heads"] == 6
    np.testing.assert_array_equal(f.filters, mel_filters(80).T)  # whisper.cpp: [n_mel, n_fft]
    assert f.filters.shape == (80, 201)
    # Byte-level BPE tokens as raw bytes: "Ġ" is the space byte, "Ġthe" is b" the".
    vocab = json.loads((random_tiny80_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(f.tokens) == 50257 and f.tokens[220] == b" " and f.tokens[vocab["Ġthe"]] == b" the"
    assert set(f.tensors) == ggml._expected_names(f.hparams)
    t = f.tensors
    assert t["encoder.conv1.weight"].dims == (3, 80, 384) and t["encoder.conv1.weight"].type_name == "f16"
    assert t["encoder.conv2.weight"].dims == (3, 384, 384)
    assert t["encoder.conv1.bias"].dims == (1, 384) and t["encoder.conv1.bias"].type_name == "f32"
    assert t["encoder.positional_embedding"].dims == (384, 1500)
    assert t["encoder.positional_embedding"].type_name == "f32"
    assert t["decoder.positional_embedding"].dims == (384, 448)
    assert t["decoder.token_embedding.weight"].dims == (384, 51865)
    assert t["decoder.token_embedding.weight"].type_name == "f16"
    assert t["encoder.blocks.0.mlp.0.weight"].dims == (384, 1536)
    assert t["decoder.blocks.3.cross_attn.key.weight"].type_name == "f16"
    assert "decoder.blocks.0.attn.key.bias" not in t and "proj_out.weight" not in t
    assert t["decoder.blocks.3.mlp_ln.bias"].type_name == "f32"
    # Data round trip: what we wrote is the source weight in float16.
    expected = _source_tensor(random_tiny80_dir, "model.decoder.layers.2.encoder_attn.v_proj.weight")
    path = tmp_path / "m" / ggml.MODEL_FILE
    np.testing.assert_array_equal(
        f.array(path, "decoder.blocks.2.cross_attn.value.weight"), expected.astype(np.float16)
    )


def test_distil_shape_128_mels_2_decoder_layers_quantised_loads_and_runs(random_distil128_dir, tmp_path):
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.ggml import GgmlBackend

    _convert(random_distil128_dir, tmp_path / "m", "q8_0")
    path = tmp_path / "m" / ggml.MODEL_FILE
    f = read_ggml(path)
    assert (f.hparams["n_mels"], f.hparams["n_text_layer"], f.hparams["n_vocab"]) == (128, 2, 51866)
    assert f.hparams["ftype"] == 2007  # qnt version 2 * 1000 + GGML_FTYPE_MOSTLY_Q8_0
    assert f.filters.shape == (128, 201)
    assert set(f.tensors) == ggml._expected_names(f.hparams)
    assert "decoder.blocks.1.mlp.2.weight" in f.tensors and "decoder.blocks.2.mlp.2.weight" not in f.tensors
    t = f.tensors
    assert t["decoder.token_embedding.weight"].type_name == "q8_0"  # 2-D: quantised
    assert t["encoder.blocks.0.attn.query.weight"].type_name == "q8_0"
    assert t["encoder.positional_embedding"].type_name == "f32"  # never quantised
    assert t["encoder.conv1.weight"].type_name == "f16" and t["encoder.conv1.weight"].dims[1] == 128
    # The bytes are gguf-py's q8_0 (bit-identical to ggml's own quantiser).
    source = _source_tensor(random_distil128_dir, "model.decoder.layers.1.fc2.weight")
    np.testing.assert_array_equal(
        f.array(path, "decoder.blocks.1.mlp.2.weight"), quantize(source, GGMLQuantizationType.Q8_0).ravel()
    )
    backend = GgmlBackend.from_model_dir(tmp_path / "m", RuntimeConfig(threads=2))
    try:
        assert (backend.context.n_vocab, backend.context.n_mels, backend.context.n_text_layer) == (
            51866,
            128,
            2,
        )
        mel = np.full((1, 128, 3000), -0.5, dtype=np.float32)
        logits = backend.next_token_logits(
            backend.encode(mel), [[backend.info.sot, backend.info.no_timestamps]]
        )
        assert logits.shape == (1, 51866) and np.isfinite(logits).all()
    finally:
        backend.close()


@pytest.mark.parametrize("precision", ["q5_0", "q4_0"])
def test_quantised_types_and_header(random_tiny80_dir, tmp_path, precision):
    _convert(random_tiny80_dir, tmp_path / "m", precision)
    f = read_ggml(tmp_path / "m" / ggml.MODEL_FILE)
    assert f.hparams["ftype"] == 2000 + ggml_format.FTYPES[precision]
    types = {
        r.type_name for n, r in f.tensors.items() if len(r.dims) == 2 and n not in ggml_format.FLOAT32_2D
    }
    assert types == {precision}
    assert f.tensors["decoder.positional_embedding"].ggml_type == GGML_TYPES["f32"]


# --- real whisper.cpp ------------------------------------------------------------------------


def test_whisper_cpp_loads_every_precision(tiny_en_dir, tmp_path):
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.ggml import GgmlBackend
    from dwkit.runtimes.whispercpp_ctypes import WhisperContext

    ftypes = {}
    for precision in ggml.FORMAT.precisions:
        out = tmp_path / precision
        _convert(tiny_en_dir, out, precision)
        context = WhisperContext(out / ggml.MODEL_FILE, flash_attn=False)
        ftypes[precision] = context.ftype
        assert (context.n_vocab, context.n_mels, context.eot, context.sot) == (51864, 80, 50256, 50257)
        assert not context.multilingual
        context.close()
    assert ftypes == {"f32": 0, "f16": 1, "q8_0": 7, "q5_0": 8, "q4_0": 2}
    # whisper.cpp 1.8.5 loads all-f32 files but aborts in its convolution: refused, not a crash.
    with pytest.raises(BackendUnavailable, match="f16 kernels"):
        GgmlBackend.from_model_dir(tmp_path / "f32", RuntimeConfig())


def test_pywhispercpp_transcribes_our_f16_file(tiny_en_dir, speech_short, tmp_path, simple_wer):
    from pywhispercpp.model import Model

    _convert(tiny_en_dir, tmp_path / "m", "f16")
    wav, text = speech_short
    model = Model(
        str(tmp_path / "m" / ggml.MODEL_FILE),
        redirect_whispercpp_logs_to=None,
        n_threads=2,
        print_progress=False,
        print_realtime=False,
    )
    transcript = " ".join(s.text for s in model.transcribe(str(wav)))
    print(f"pywhispercpp on our f16 tiny.en: {transcript!r}")
    assert simple_wer(text, transcript) <= 0.1


def test_convert_validates_against_transformers_and_writes_manifest(tiny_en_dir, tmp_path):
    result = convert(tiny_en_dir, tmp_path / "m", "ggml", "f16", threads=2)
    out = tmp_path / "m"
    assert sorted(p.name for p in out.iterdir()) == sorted(result.files)
    for name in ggml.FORMAT.side_files:
        assert (out / name).read_bytes() == (tiny_en_dir / name).read_bytes()
    manifest = read_manifest(out)
    assert manifest["format"] == "ggml" and manifest["precision"] == "f16"
    assert manifest["model_file"] == ggml.MODEL_FILE
    assert manifest["source"]["weights_checksum"] and manifest["weights_checksum"]
    assert manifest["whisper_cpp"].startswith("1.8")
    assert {"gguf", "pywhispercpp", "transformers"} <= set(manifest["library_versions"])
    assert ModelInfo.from_model_dir(out) == ModelInfo.from_hf_dir(tiny_en_dir)
    v = manifest["validation"]
    print(
        f"validation f16 (flash off): logits max abs {v['logits_max_abs']:.4f}, cosine "
        f"{v['logits_cosine']:.6f}, token error rate {v['token_error_rate']:.3f}"
    )
    assert v["passed"] and v["level"] == "numeric" and v["flash_attn"] is False
    assert v["encoder_max_abs"] is None  # whisper.cpp exposes no encoder output
    assert v["logits_max_abs"] < 0.25 and v["tokens_equal"]
    from dwkit.runtimes import backend_of

    assert backend_of(out) == "ggml"


def test_f32_validation_is_load_only_and_says_so(tiny_en_dir, tmp_path):
    result = convert(tiny_en_dir, tmp_path / "m", "ggml", "f32")
    assert result.validation["passed"] is None and result.validation["level"] == "load"
    assert "aborts" in result.validation["note"]
    assert read_ggml(tmp_path / "m" / ggml.MODEL_FILE).tensors["encoder.conv1.weight"].type_name == "f32"


# --- errors and atomicity --------------------------------------------------------------------


def test_unknown_precision_lists_the_valid_ones(tiny_en_dir, tmp_path):

    with pytest.raises(ConversionError, match="f32, f16, q8_0, q5_0, q4_0"):
        convert(tiny_en_dir, tmp_path / "m", "ggml", "q6_k")
    with pytest.raises(ConversionError, match="q8_0"):
        convert(tiny_en_dir, tmp_path / "m", "ggml", "fp16")
    assert not (tmp_path / "m").exists()


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or p.name == "m"]


def test_failure_mid_write_leaves_nothing(random_tiny80_dir, tmp_path, monkeypatch):
    real = ggml_format.write_tensor
    calls = []

    def failing(out, name, array, ggml_type):
        calls.append(name)
        if len(calls) == 20:
            raise OSError("disk full")
        real(out, name, array, ggml_type)

    monkeypatch.setattr(ggml_format, "write_tensor", failing)
    with pytest.raises(OSError, match="disk full"):
        _convert(random_tiny80_dir, tmp_path / "m", "f16")
    assert _leftovers(tmp_path) == []


def test_failed_validation_leaves_nothing_and_keeps_an_existing_model(
    random_tiny80_dir, tmp_path, monkeypatch
):
    _convert(random_tiny80_dir, tmp_path / "m", "q8_0")
    before = read_manifest(tmp_path / "m")
    monkeypatch.setattr(
        ggml, "validate_model", lambda *a, **k: {"passed": False, "failures": ["logits cosine 0.1 < 0.995"]}
    )
    with pytest.raises(ValidationError, match="cosine 0.1"):
        convert(random_tiny80_dir, tmp_path / "m", "ggml", "f16", overwrite=True)
    assert read_manifest(tmp_path / "m") == before  # the old model is untouched
    assert [p for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    with pytest.raises(ConversionError, match="already exists"):
        _convert(random_tiny80_dir, tmp_path / "m", "f16")


def test_shapes_whisper_cpp_cannot_represent_are_refused(random_tiny80_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(random_tiny80_dir, src)
    cfg = _config(src)
    cfg["decoder_ffn_dim"] = 1000
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="4 \\* d_model"):
        _convert(src, tmp_path / "m", "f16")
    assert _leftovers(tmp_path) == []


def test_vocab_bytes_decode_like_the_tokenizer(base_dir):
    from tokenizers import Tokenizer

    tokenizer = json.loads((base_dir / "tokenizer.json").read_text())
    tokens = ggml_format.vocab_bytes(tokenizer["model"]["vocab"], 50257)
    assert len(set(ggml_format.bytes_to_unicode().values())) == 256
    bpe = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    checked = 0
    for i in range(0, 50257, 97):
        try:
            text = tokens[i].decode("utf-8")
        except UnicodeDecodeError:  # a partial multi-byte character: the tokenizer shows U+FFFD
            continue
        assert bpe.decode([i], skip_special_tokens=False) == text
        checked += 1
    assert checked > 400
