"""The OpenVINO backend against the transformers reference: numerics, whole transcripts through
the shared long-form engine at fp32, int8 within the int8 WER budget, and its errors.
(The contract suite, tests/runtimes/test_contract.py, covers batching, select, beams, reorder.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("transformers")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.compare import compare_backends  # noqa: E402
from dwkit.errors import ConfigError, ModelError  # noqa: E402
from dwkit.features import log_mel  # noqa: E402
from dwkit.longform.options import LongformOptions  # noqa: E402
from dwkit.metrics import wer  # noqa: E402
from dwkit.parity.config import ParityConfig  # noqa: E402
from dwkit.runtimes import backend_of, load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.openvino import OpenVinoBackend  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402
from tests.converters.test_openvino import converted  # noqa: E402

RUNTIME = RuntimeConfig(threads=2)


@pytest.fixture(scope="module")
def tiny_ov(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "fp32", dwkit_cache)


@pytest.fixture(scope="module")
def tiny_ov_int8(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "int8", dwkit_cache)


@pytest.fixture(scope="module")
def hf_transcripts(tiny_en_dir: Path, speech_short):  # type: ignore[no-untyped-def]
    audio = load_audio(speech_short[0])
    return {
        mode: Transcriber.from_model_dir(tiny_en_dir, "hf", RUNTIME, LongformOptions(mode=mode)).transcribe(
            audio
        )
        for mode in ("sequential", "chunked")
    }


def test_fp32_runs_f32_and_matches_transformers(tiny_en_dir: Path, tiny_ov: Path, speech_short) -> None:  # type: ignore[no-untyped-def]
    assert backend_of(tiny_ov) == "openvino"
    ov = load(tiny_ov, config=RUNTIME)
    assert isinstance(ov, OpenVinoBackend) and ov.precision == "fp32"
    assert ov.inference_precision == "f32"  # not the plugin's bf16 default on a bf16-capable CPU
    mel = log_mel(load_audio(speech_short[0]), 80)[None]
    report = compare_backends(load(tiny_en_dir, "hf", RUNTIME), ov, mel)
    assert report.encoder_max_abs < 1e-2 and report.logits_max_abs < 1e-3 and report.tokens_equal


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_fp32_transcripts_equal_transformers(tiny_ov: Path, speech_short, hf_transcripts, mode: str) -> None:  # type: ignore[no-untyped-def]
    audio, spoken = speech_short
    ours = Transcriber.from_model_dir(
        tiny_ov, options=LongformOptions(mode=mode), runtime=RUNTIME
    ).transcribe(load_audio(audio))
    theirs = hf_transcripts[mode]
    assert ours.backend == "openvino"
    assert ours.text == theirs.text
    assert [s.tokens for s in ours.segments] == [s.tokens for s in theirs.segments]
    assert wer(spoken, ours.text) < 0.25


@pytest.mark.slow  # converts tiny.en to int8 first (NNCF: ~1-3 min)
def test_int8_transcript_is_within_the_int8_threshold(
    tiny_ov_int8: Path, speech_short, hf_transcripts
) -> None:  # type: ignore[no-untyped-def]
    audio, spoken = speech_short
    ours = Transcriber.from_model_dir(tiny_ov_int8, runtime=RUNTIME).transcribe(load_audio(audio))
    measured = wer(hf_transcripts["sequential"].text, ours.text)
    print(
        f"\nopenvino int8 WER vs hf fp32: {measured:.3f} ({ours.text!r}); vs spoken {wer(spoken, ours.text):.3f}"
    )
    limit = ParityConfig.load().thresholds("openvino", "int8")[1]["wer_max"]
    assert measured <= limit


def test_configuration_errors_name_the_fix(tiny_ov: Path, tiny_en_dir: Path) -> None:
    with pytest.raises(ConfigError, match="holds fp32 graphs"):
        load(tiny_ov, config=RuntimeConfig(precision="int8"))
    with pytest.raises(ConfigError, match="unknown"):
        load(tiny_ov, config=RuntimeConfig(options={"provider": "cpu"}))
    with pytest.raises(ConfigError, match="choose one of latency, throughput"):
        load(tiny_ov, config=RuntimeConfig(options={"performance_hint": "fast"}))
    with pytest.raises(ModelError, match="not an openvino model directory"):
        OpenVinoBackend.from_model_dir(tiny_en_dir, RUNTIME)


def test_a_truncated_ir_is_reported(tiny_ov: Path, tmp_path: Path) -> None:
    import shutil

    from dwkit.manifest import read_manifest
    from dwkit.runtimes.openvino import BACKEND

    copy = tmp_path / "copy"
    shutil.copytree(tiny_ov, copy)
    assert BACKEND.file_problems(copy, read_manifest(copy)) == []
    weights = copy / "decoder_step.bin"
    weights.write_bytes(weights.read_bytes()[:100])
    problems = BACKEND.file_problems(copy, read_manifest(copy))
    assert len(problems) == 1 and "truncated" in problems[0]
    with pytest.raises(ModelError, match="decoder_step"):
        load(copy, config=RUNTIME)


def test_select_keeps_the_encoder_rows_asked_for(tiny_ov: Path, speech_short) -> None:  # type: ignore[no-untyped-def]
    ov = load(tiny_ov, config=RUNTIME)
    samples = load_audio(speech_short[0])
    mel = np.stack([log_mel(samples, 80), log_mel(samples[8000:], 80)]).astype(np.float32)
    enc = ov.encode(mel)
    picked = ov.select(enc, [1, 1, 0])
    np.testing.assert_array_equal(ov.encoder_array(picked), ov.encoder_array(enc)[[1, 1, 0]])


@pytest.mark.parametrize(
    ("spec", "role"), [("hf:fp32+openvino:fp32", "decoder"), ("openvino:fp32+hf:fp32", "encoder")]
)
def test_openvino_is_either_side_of_a_pair(
    tiny_ov: Path, tiny_en_dir: Path, speech_short, spec, role
) -> None:  # type: ignore[no-untyped-def]
    from dwkit.runtimes.pair import PairBackend

    pair = load(tiny_en_dir, spec, RuntimeConfig(threads=2, options={f"{role}_model": str(tiny_ov)}))
    assert isinstance(pair, PairBackend) and isinstance(getattr(pair, role), OpenVinoBackend)
    mel = log_mel(load_audio(speech_short[0]), 80)[None]
    alone = load(tiny_ov if role == "decoder" else tiny_en_dir, config=RUNTIME)  # the decoder side alone
    report = compare_backends(alone, pair, mel, max_new_tokens=24)
    assert report.tokens_equal and len(report.reference_tokens) == 24
    assert 0 < report.encoder_max_abs < 1e-2  # the other side's encoder ran
    states = pair.encoder.encoder_array(pair.encoder.encode(mel))
    handed = pair.decoder.encoder_states_from_array(states)
    assert np.shares_memory(np.asarray(handed.data.numpy() if role == "encoder" else handed.data), states)
    side = getattr(pair, role)  # holds only the graphs of its half
    assert sorted(side.requests) == (["decoder_init", "decoder_step"] if role == "decoder" else ["encoder"])
    if role == "decoder":
        with pytest.raises(ModelError, match=r"pair's decoder side, without its encoder graph"):
            side.encode(mel)
    pair.close()
