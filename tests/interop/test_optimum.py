"""optimum / onnx-community ONNX exports, unchanged, on the onnx backend: recognised by their
own files, every precision variant and both decoder layouts transcribing like transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.cli.main import entry as dwkit  # noqa: E402
from dwkit.compare import compare_backends  # noqa: E402
from dwkit.errors import ModelError  # noqa: E402
from dwkit.features import log_mel  # noqa: E402
from dwkit.metrics import wer  # noqa: E402
from dwkit.parity.candidates import Candidate  # noqa: E402
from dwkit.runtimes import backend_of, load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.onnx_optimum import OptimumOnnxBackend  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402
from tests.interop.optimum_exports import onnx_community_layout, optimum_export  # noqa: E402

LOGITS_ATOL = 1e-3  # optimum's own Whisper validation tolerance
QUANTIZED_WER_MAX = 0.1  # against the hf fp32 transcript, as tests/runtimes/test_onnx_backend.py


def runtime(precision: str | None = None, **options: str) -> RuntimeConfig:
    return RuntimeConfig(threads=2, precision=precision, options=dict(options))


@pytest.fixture(scope="module")
def tiny_optimum(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return optimum_export(tiny_en_dir, dwkit_cache, variants=("int8", "fp16"))


@pytest.fixture(scope="module")
def hf_text(tiny_en_dir: Path, speech_short) -> str:  # type: ignore[no-untyped-def]
    return Transcriber.from_model_dir(tiny_en_dir, "hf", runtime()).transcribe(speech_short[0]).text


def transcribe(model_dir: Path, audio: Path, config: RuntimeConfig) -> str:
    transcriber = Transcriber.from_model_dir(model_dir, None, config)
    assert isinstance(transcriber.backend, OptimumOnnxBackend)
    return transcriber.transcribe(audio).text


def test_an_optimum_export_is_recognised_by_its_files(tiny_optimum: Path, tmp_path: Path) -> None:
    assert not (tiny_optimum / "dwkit.json").exists()
    assert backend_of(tiny_optimum) == "onnx"
    hub = onnx_community_layout(tiny_optimum, tmp_path / "onnx-community")
    assert backend_of(hub) == "onnx"
    assert Candidate.parse(f"onnx:{hub}:fp32").resolve_precision() == "fp32"


@pytest.mark.parametrize("decoder", ["split", "merged"])
def test_fp32_transcribes_like_transformers(
    tiny_optimum: Path, speech_short, hf_text: str, decoder: str
) -> None:  # type: ignore[no-untyped-def]
    config = runtime(decoder=decoder)
    backend = load(tiny_optimum, config=config)
    assert (backend.files.with_past is None) == (decoder == "merged")
    assert transcribe(tiny_optimum, speech_short[0], runtime(decoder=decoder)) == hf_text


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_quantised_and_fp16_variants_stay_close(
    tiny_optimum: Path, speech_short, hf_text: str, precision: str
) -> None:  # type: ignore[no-untyped-def]
    backend = load(tiny_optimum, config=runtime(precision))
    assert backend.files.encoder.name == f"encoder_model_{precision}.onnx"
    text = transcribe(tiny_optimum, speech_short[0], runtime(precision))
    print(f"\n{precision}: {text!r}")
    assert wer(hf_text, text) <= QUANTIZED_WER_MAX


def test_the_onnx_community_layout_runs_from_the_cli(
    tiny_optimum: Path, speech_short, hf_text: str, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    hub = onnx_community_layout(tiny_optimum, tmp_path / "hub")
    args = ["transcribe", str(speech_short[0]), "--model", str(hub), "--precision", "int8", "--threads", "2"]
    assert dwkit(args) == 0
    text = capsys.readouterr().out.strip()
    assert wer(hf_text, text) <= QUANTIZED_WER_MAX


def test_a_missing_variant_names_the_files(tiny_optimum: Path, speech_short, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match=r"encoder_model_q4\.onnx.*precisions present: fp32, fp16, int8"):
        load(tiny_optimum, config=runtime("q4"))
    with pytest.raises(ModelError, match=r"decoder_with_past_model_int8\.onnx"):
        load(tiny_optimum, config=runtime("int8", decoder="split"))
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(tiny_optimum), "--precision", "q4"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("dwkit: error:") and "encoder_model_q4.onnx" in errors[0]


def test_random_model_logits_and_tokens_match_transformers(
    random_tiny80_dir: Path, dwkit_cache: Path, speech_short
) -> None:  # type: ignore[no-untyped-def]
    export = optimum_export(random_tiny80_dir, dwkit_cache)
    mel = log_mel(load_audio(speech_short[0]), 80)[None]
    hf = load(random_tiny80_dir, "hf", runtime())
    for decoder in ("split", "merged"):
        report = compare_backends(hf, load(export, config=runtime(decoder=decoder)), mel, max_new_tokens=24)
        assert report.logits_max_abs < LOGITS_ATOL
        assert report.tokens_equal and len(report.reference_tokens) >= 24
        assert np.isfinite(report.logits_max_abs)
