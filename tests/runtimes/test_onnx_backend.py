"""The onnxruntime backend against the transformers reference: numerics, tokens, beam search,
cache handling, and whole transcripts through the shared long-form engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.compare import compare_backends  # noqa: E402
from dwkit.decoding.options import DecodeOptions  # noqa: E402
from dwkit.errors import BackendUnavailable, ConfigError, ModelError  # noqa: E402
from dwkit.features import log_mel  # noqa: E402
from dwkit.longform.options import LongformOptions  # noqa: E402
from dwkit.metrics import wer  # noqa: E402
from dwkit.runtimes import backend_of, load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.onnx import OnnxBackend, _trt_profile  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402

LOGITS_ATOL = 1e-3
# fp32 encoder states on speech_short: ~2e-5 from transformers. (On some windows two float32
# implementations of tiny.en's encoder differ by a few 1e-3: transformers fp32 itself is 7e-3
# from a float64 run there, onnxruntime 2.6e-3.)
ENCODER_ATOL = 1e-3
# WER of quantised transcripts against the hf fp32 transcript of the same audio.
QUANTIZED_WER_MAX = 0.1
RUNTIME = RuntimeConfig(threads=2)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)


@pytest.fixture(scope="module")
def tiny_pair(tiny_en_dir: Path, tiny_onnx: Path):  # type: ignore[no-untyped-def]
    return load(tiny_en_dir, "hf", RUNTIME), load(tiny_onnx, config=RUNTIME)


@pytest.fixture(scope="module")
def short_mel(speech_short) -> np.ndarray:  # type: ignore[no-untyped-def]
    audio, _ = speech_short
    return log_mel(load_audio(audio), 80)[None]


@pytest.fixture(scope="module")
def hf_transcripts(tiny_en_dir: Path, speech_short):  # type: ignore[no-untyped-def]
    """transformers' sequential and chunked transcripts of speech_short, made once."""
    audio = load_audio(speech_short[0])
    return {
        mode: Transcriber.from_model_dir(tiny_en_dir, "hf", RUNTIME, LongformOptions(mode=mode)).transcribe(
            audio
        )
        for mode in ("sequential", "chunked")
    }


def test_registry_finds_onnx_from_the_manifest(tiny_pair, tiny_onnx: Path) -> None:  # type: ignore[no-untyped-def]
    _, onnx = tiny_pair
    assert backend_of(tiny_onnx) == "onnx"
    assert isinstance(onnx, OnnxBackend) and onnx.name == "onnx" and onnx.precision == "fp32"
    assert onnx.info.n_mels == 80 and not onnx.info.multilingual


def test_encoder_logits_and_greedy_tokens_match_transformers(tiny_pair, short_mel) -> None:  # type: ignore[no-untyped-def]
    hf, onnx = tiny_pair
    report = compare_backends(hf, onnx, short_mel)
    print(
        f"\nfp32 vs hf on speech_short: encoder {report.encoder_max_abs:.2e}, logits {report.logits_max_abs:.2e}, "
        f"{len(report.reference_tokens)} tokens equal: {report.tokens_equal}"
    )
    assert report.encoder_max_abs < ENCODER_ATOL
    assert report.logits_max_abs < LOGITS_ATOL
    assert report.tokens_equal and len(report.reference_tokens) > 10


def test_batch_of_two_with_different_prompt_lengths_matches_transformers(tiny_pair, short_mel) -> None:  # type: ignore[no-untyped-def]
    hf, onnx = tiny_pair
    info = onnx.info
    mel = np.concatenate([short_mel, short_mel[..., ::-1].copy()])
    prompts = [[info.sot, info.no_timestamps], [info.sot_prev, 1770, 13, info.sot, info.no_timestamps]]
    enc_hf, enc_onnx = hf.encode(mel), onnx.encode(mel)
    assert (
        np.abs(hf.next_token_logits(enc_hf, prompts) - onnx.next_token_logits(enc_onnx, prompts)).max()
        < LOGITS_ATOL
    )
    opts = DecodeOptions(without_timestamps=True, max_new_tokens=40)
    ours = [h.tokens for h in onnx.generate(enc_onnx, prompts, opts)]
    theirs = [h.tokens for h in hf.generate(enc_hf, prompts, opts)]
    assert ours == theirs


def test_reorder_moves_rows_and_gathers_cross_attention_only_across_audio(tiny_pair, short_mel) -> None:  # type: ignore[no-untyped-def]
    _, onnx = tiny_pair
    info = onnx.info
    mel = np.concatenate([short_mel, np.zeros_like(short_mel)])
    enc = onnx.encode(mel)
    prompt = np.array([[info.sot, info.no_timestamps]] * 2)
    cache = onnx.start(enc, np.array([0, 1]))
    onnx.step(prompt, cache)
    nxt = np.array([[440], [50]])
    reference = onnx.step(nxt, cache)[:, -1]

    swapped = onnx.start(enc, np.array([0, 1]))
    onnx.step(prompt, swapped)
    onnx.reorder(swapped, np.array([1, 0]))  # rows change audio: cross K/V must follow
    logits = onnx.step(nxt[::-1].copy(), swapped)[:, -1]
    np.testing.assert_allclose(logits, reference[::-1], atol=1e-5)

    beams = onnx.start(enc, np.array([0, 0, 1, 1]))
    onnx.step(np.repeat(prompt, 2, axis=0), beams)
    cross = beams.cross_kv
    onnx.reorder(beams, np.array([1, 1, 2, 3]))  # within each audio: cross K/V are shared as they are
    assert beams.cross_kv is cross
    np.testing.assert_array_equal(beams.rows, [0, 0, 1, 1])


def test_several_tokens_after_a_prefix_equal_one_pass(tiny_pair, short_mel) -> None:  # type: ignore[no-untyped-def]
    _, onnx = tiny_pair
    info = onnx.info
    enc = onnx.encode(short_mel)
    tokens = np.array([[info.sot, info.no_timestamps, 440, 3047, 284]])
    whole = onnx.step(tokens, onnx.start(enc, np.array([0])))
    cache = onnx.start(enc, np.array([0]))
    parts = [onnx.step(tokens[:, :2], cache), onnx.step(tokens[:, 2:], cache)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-4)


def test_select_keeps_the_encoder_rows_asked_for(tiny_pair, short_mel) -> None:  # type: ignore[no-untyped-def]
    _, onnx = tiny_pair
    mel = np.concatenate([short_mel, np.zeros_like(short_mel)])
    enc = onnx.encode(mel)
    picked = onnx.select(enc, [1, 1, 0])
    full, rows = onnx.encoder_array(enc), onnx.encoder_array(picked)
    assert picked.batch_size == 3
    np.testing.assert_array_equal(rows, full[[1, 1, 0]])


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_transcripts_equal_transformers(tiny_onnx: Path, speech_short, hf_transcripts, mode: str) -> None:  # type: ignore[no-untyped-def]
    audio, spoken = speech_short
    ours = Transcriber.from_model_dir(
        tiny_onnx, options=LongformOptions(mode=mode), runtime=RUNTIME
    ).transcribe(load_audio(audio))
    theirs = hf_transcripts[mode]
    assert ours.backend == "onnx"
    assert ours.text == theirs.text
    assert [(s.start, s.end) for s in ours.segments] == [(s.start, s.end) for s in theirs.segments]
    assert [s.tokens for s in ours.segments] == [s.tokens for s in theirs.segments]
    assert wer(spoken, ours.text) < 0.25


def test_beam_search_equals_transformers_beam_and_is_sensible(
    tiny_en_dir: Path, tiny_onnx: Path, speech_short
) -> None:  # type: ignore[no-untyped-def]
    audio, spoken = speech_short
    opts = LongformOptions(decode=DecodeOptions(beam_size=3))
    samples = load_audio(audio)
    ours = Transcriber.from_model_dir(tiny_onnx, runtime=RUNTIME, options=opts).transcribe(samples)
    theirs = Transcriber.from_model_dir(tiny_en_dir, "hf", RUNTIME, opts).transcribe(samples)
    print(f"\nbeam 3: {ours.text!r}, WER vs spoken {wer(spoken, ours.text):.3f}")
    assert ours.text == theirs.text
    assert wer(spoken, ours.text) < 0.25


def _quantized_wer(
    precision: str, tiny_en_dir: Path, dwkit_cache: Path, speech_short, hf_transcripts
) -> float:  # type: ignore[no-untyped-def]
    model = converted(tiny_en_dir, precision, dwkit_cache)
    audio, spoken = speech_short
    ours = Transcriber.from_model_dir(model, runtime=RUNTIME).transcribe(load_audio(audio))
    reference = hf_transcripts["sequential"].text
    measured = wer(reference, ours.text)
    print(
        f"\n{precision} WER vs hf fp32 transcript: {measured:.3f} ({ours.text!r}); vs spoken {wer(spoken, ours.text):.3f}"
    )
    return measured


def test_int8_transcript_is_close_to_transformers(
    tiny_en_dir, dwkit_cache, speech_short, hf_transcripts
) -> None:  # type: ignore[no-untyped-def]
    assert _quantized_wer("int8", tiny_en_dir, dwkit_cache, speech_short, hf_transcripts) <= QUANTIZED_WER_MAX


@pytest.mark.slow
def test_fp16_transcript_is_close_to_transformers(
    tiny_en_dir, dwkit_cache, speech_short, hf_transcripts
) -> None:  # type: ignore[no-untyped-def]
    assert _quantized_wer("fp16", tiny_en_dir, dwkit_cache, speech_short, hf_transcripts) <= QUANTIZED_WER_MAX


def test_configuration_errors_name_the_fix(tiny_onnx: Path, tiny_en_dir: Path) -> None:
    with pytest.raises(ConfigError, match="holds fp32 graphs"):
        load(tiny_onnx, config=RuntimeConfig(precision="int8"))
    with pytest.raises(ConfigError, match="unknown"):
        load(tiny_onnx, config=RuntimeConfig(options={"flash_attention": True}))
    with pytest.raises(ConfigError, match="choose one of disable"):
        load(tiny_onnx, config=RuntimeConfig(options={"graph_optimization": "max"}))
    with pytest.raises(ConfigError, match="does not run on device cpu"):
        load(tiny_onnx, config=RuntimeConfig(options={"provider": "tensorrt"}))
    with pytest.raises(ModelError, match="not an onnx model directory"):
        OnnxBackend.from_model_dir(tiny_en_dir, RUNTIME)


def test_cuda_without_onnxruntime_gpu_is_unavailable(tiny_onnx: Path) -> None:
    import onnxruntime

    from dwkit import devices

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    # Without a GPU the registry says so first; with one, the probe names the missing package.
    reason = "onnxruntime-gpu" if devices.nvidia_gpu_present() else "no NVIDIA GPU visible"
    with pytest.raises(BackendUnavailable, match=reason):
        load(tiny_onnx, config=RuntimeConfig(device="cuda"))


def test_tensorrt_profiles_cover_batches_beams_and_the_whole_context(tiny_onnx: Path) -> None:
    info = OnnxBackend.from_model_dir(tiny_onnx, RUNTIME).info
    config = RuntimeConfig(device="cuda", batch_size=4)
    step = _trt_profile("decoder_step", info, config)
    assert step["trt_profile_min_shapes"].startswith("input_ids:1x1,past_key.0:1x6x1x64,")
    assert "past_key.0:20x6x447x64" in step["trt_profile_max_shapes"]
    assert "cross_value.3:20x6x1500x64" in step["trt_profile_max_shapes"]
    init = _trt_profile("decoder_init", info, config)
    assert init["trt_profile_max_shapes"] == "input_ids:20x448,encoder_hidden_states:20x1500x384"
    encoder = _trt_profile("encoder", info, config)
    assert encoder["trt_profile_max_shapes"] == "input_features:4x80x3000"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_long_form_transcripts_equal_transformers(
    tiny_en_dir: Path, tiny_onnx: Path, speech_long, mode: str
) -> None:  # type: ignore[no-untyped-def]
    audio = load_audio(speech_long[0])
    opts = LongformOptions(mode=mode, batch_size=4)
    ours = Transcriber.from_model_dir(tiny_onnx, runtime=RUNTIME, options=opts).transcribe(audio)
    theirs = Transcriber.from_model_dir(tiny_en_dir, "hf", RUNTIME, opts).transcribe(audio)
    assert ours.text == theirs.text
    assert [(s.start, s.end) for s in ours.segments] == [(s.start, s.end) for s in theirs.segments]


@pytest.mark.slow
def test_multilingual_base_detects_english_and_matches_transformers(
    base_dir: Path, dwkit_cache: Path, speech_short
) -> None:  # type: ignore[no-untyped-def]
    model = converted(base_dir, "fp32", dwkit_cache, validate=True)
    samples = load_audio(speech_short[0])
    hf, onnx = load(base_dir, "hf", RUNTIME), load(model, config=RUNTIME)
    mel = log_mel(samples, 80)[None]
    report = compare_backends(hf, onnx, mel)
    assert report.logits_max_abs < LOGITS_ATOL and report.tokens_equal
    languages = onnx.detect_language(onnx.encode(mel))[0]
    assert max(languages, key=languages.get) == "en"
    ours = Transcriber.from_model_dir(model, runtime=RUNTIME).transcribe(samples)
    theirs = Transcriber.from_model_dir(base_dir, "hf", RUNTIME).transcribe(samples)
    assert ours.language == theirs.language == "en"
    assert ours.text == theirs.text
