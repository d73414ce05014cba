"""Word timestamps on trt: the onnx export's alignment graph gets its own engine (plan, profile,
manifest), the backend's `cross_attentions` runs it, and engines built without it name the fix.
Engines here come from the stand-in `tensorrt` module of test_trt_backend.py (it runs each
"engine" in onnxruntime on the raw buffers it is given), so everything around TensorRT is
checked on CPU; real engines are gpu-marked and skip with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from dwkit.converters import convert  # noqa: E402
from dwkit.errors import ConversionError, ModelError  # noqa: E402
from dwkit.manifest import read_manifest  # noqa: E402
from dwkit.onnx_graphs import DECODER_ALIGN, GRAPHS  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.onnx import OnnxBackend  # noqa: E402
from dwkit.runtimes.trt import TrtBackend  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402
from tests.runtimes.test_trt_backend import _require_tensorrt, install_stand_in  # noqa: E402

RUNTIME = RuntimeConfig(threads=2)
# The stand-in runs the very graph onnxruntime runs: equal up to float rounding.
STAND_IN_ATOL = 1e-5
# Real fp16 engines against onnxruntime fp32: softmax weights in [0, 1].
FP16_WEIGHTS_ATOL = 2e-2


def _tokens(backend: Any) -> list[int]:
    info = backend.info
    # Arbitrary text tokens: the two runtimes are compared on the same teacher-forced input.
    return [info.sot, info.no_timestamps, 843, 523, 616, 7546, 4952, 13, info.eot]


def test_a_dry_run_plans_the_alignment_engine(tiny_words_onnx: Path, tmp_path: Path) -> None:
    out = convert(tiny_words_onnx, tmp_path / "dry", "trt", "fp16", dry_run=True).out_dir
    manifest = read_manifest(out)
    assert manifest["word_timestamps"] is True and manifest["plan"]["word_timestamps"] is True
    engines = manifest["plan"]["engines"]
    assert list(engines) == [*GRAPHS, DECODER_ALIGN]
    profile = engines[DECODER_ALIGN]["profile"]
    info = manifest["model_info"]
    assert profile["input_ids"] == {"min": [1, 1], "opt": [1, 4], "max": [1, info["n_text_ctx"]]}
    assert profile["encoder_hidden_states"]["max"] == [1, info["n_audio_ctx"], info["d_model"]]
    assert (out / "decoder_align.onnx").is_file()
    assert [g["file"] for g in manifest["graphs"]][-1] == "decoder_align.onnx"


def test_asking_for_words_from_an_export_without_the_graph_names_the_fix(
    tiny_en_dir: Path, dwkit_cache: Path, tmp_path: Path
) -> None:
    plain = converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)
    with pytest.raises(
        ConversionError, match=r"no decoder_align\.onnx .*dwconvert --to onnx --word-timestamps"
    ):
        convert(plain, tmp_path / "out", "trt", "fp16", dry_run=True, word_timestamps=True)
    assert not (tmp_path / "out").exists()
    dry = convert(plain, tmp_path / "plain", "trt", "fp16", dry_run=True).out_dir
    assert read_manifest(dry)["word_timestamps"] is False


def test_cross_attentions_run_the_alignment_engine_like_onnxruntime(
    tiny_words_onnx: Path, speech_mel: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record: dict[str, Any] = {}
    install_stand_in(monkeypatch, record)
    config = RuntimeConfig(device="cuda", options={"engine_cache": str(tmp_path), "max_batch": 2})
    trt = TrtBackend.from_model_dir(tiny_words_onnx, config)
    assert [b["graph"] for b in record["builds"]] == [*GRAPHS, DECODER_ALIGN]
    assert trt.max_batch[DECODER_ALIGN] == 1 and trt.max_batch["decoder_step"] == 2
    onnx = OnnxBackend.from_model_dir(tiny_words_onnx, RUNTIME)
    mel = np.concatenate([speech_mel * 0.5, speech_mel])
    tokens, heads = _tokens(trt), [(3, 0), (2, 5), (3, 0)]
    weights, logits = trt.cross_attentions(trt.encode(mel), 1, tokens, heads)
    ref_weights, ref_logits = onnx.cross_attentions(onnx.encode(mel), 1, tokens, heads)
    assert weights.shape == (3, len(tokens), trt.info.n_audio_ctx) and weights.dtype == np.float32
    assert np.abs(weights - ref_weights).max() < STAND_IN_ATOL
    assert np.abs(logits - ref_logits).max() < STAND_IN_ATOL
    assert [run[:2] for run in record["runs"] if run[0] == DECODER_ALIGN] == [(DECODER_ALIGN, 1)]


def test_engines_without_the_alignment_graph_name_the_fix(
    tiny_en_dir: Path,
    dwkit_cache: Path,
    speech_mel: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_stand_in(monkeypatch, {})
    plain = converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)
    trt = TrtBackend.from_model_dir(
        plain, RuntimeConfig(device="cuda", options={"engine_cache": str(tmp_path)})
    )
    assert DECODER_ALIGN not in trt.engines
    with pytest.raises(ModelError, match=r"without the cross-attention graph .*--to trt --word-timestamps"):
        trt.cross_attentions(trt.encode(speech_mel), 0, _tokens(trt), [(3, 0)])


@pytest.mark.gpu
def test_real_fp16_engines_give_the_cross_attentions_of_onnxruntime(
    tiny_words_onnx: Path, speech_mel: np.ndarray, tmp_path: Path
) -> None:
    _require_tensorrt()
    built = convert(tiny_words_onnx, tmp_path / "trt", "trt", "fp16", validate=False).out_dir
    trt = TrtBackend.from_model_dir(built, RuntimeConfig(device="cuda"))
    onnx = OnnxBackend.from_model_dir(tiny_words_onnx, RUNTIME)
    tokens, heads = _tokens(trt), [(3, 0), (2, 5)]
    weights, _ = trt.cross_attentions(trt.encode(speech_mel), 0, tokens, heads)
    reference, _ = onnx.cross_attentions(onnx.encode(speech_mel), 0, tokens, heads)
    assert np.abs(weights - reference).max() < FP16_WEIGHTS_ATOL
