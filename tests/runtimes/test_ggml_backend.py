"""The whisper.cpp backend: the ctypes layer is checked before use, step logits match
transformers, the shared decoders and long-form engine run on it, quantised WER is measured."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from dwkit.audio import load_audio
from dwkit.converters import convert
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import BackendUnavailable, ConfigError
from dwkit.features import log_mel
from dwkit.metrics import wer
from dwkit.runtimes import load
from dwkit.runtimes.base import RuntimeConfig
from dwkit.tokenizer import Tokenizer
from dwkit.transcriber import Transcriber

pytest.importorskip("pywhispercpp")
pytest.importorskip("gguf")

FLASH_OFF = {"flash_attn": False}
# Quantised WER on speech_short with tiny.en may exceed transformers' by at most this much
# (measured: 0.0 for q8_0, q5_0 and q4_0 on these two sentences; see the printed values).
QUANTISED_WER_DELTA = {"q8_0": 0.05, "q5_0": 0.10, "q4_0": 0.20}


@pytest.fixture(scope="module")
def tiny_ggml(tiny_en_dir, tmp_path_factory):
    """tiny.en converted to every runnable precision (no validation: that is the converter's test)."""
    root = tmp_path_factory.mktemp("ggml-tiny")
    for precision in ("f16", "q8_0", "q5_0", "q4_0"):
        convert(tiny_en_dir, root / precision, "ggml", precision, validate=False)
    return root


@pytest.fixture(scope="module")
def hf_tiny(tiny_en_dir):
    return load(tiny_en_dir, "hf", RuntimeConfig(threads=2))


@pytest.fixture(scope="module")
def ggml_f16(tiny_ggml):
    backend = load(tiny_ggml / "f16", config=RuntimeConfig(threads=2, options=FLASH_OFF))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def short_mel(speech_short):
    return log_mel(load_audio(speech_short[0]), 80)[None]


def _prompt(info) -> list[int]:
    return [info.sot, info.no_timestamps]


# --- the ctypes layer ------------------------------------------------------------------------


def test_library_is_pywhispercpps_whisper_cpp_1_8_with_the_expected_struct():
    from dwkit.runtimes.whispercpp_ctypes import ContextParams, library

    lib = library()
    assert lib.version.startswith("1.8.") and "whisper" in lib.path.name
    assert ctypes.sizeof(ContextParams) == 48
    defaults = lib.default_params()
    assert defaults.flash_attn is True and defaults.dtw_n_top == -1  # 1.8.5's defaults
    assert "CPU" in lib.system_info() or "AVX" in lib.system_info()


def test_a_layout_or_version_mismatch_is_backend_unavailable_not_a_crash(monkeypatch):
    from dwkit.runtimes import whispercpp_ctypes as wc

    path = wc.library().path
    monkeypatch.setattr(wc, "DTW_MEM_SIZE_DEFAULT", 1)  # what a shifted struct would read
    with pytest.raises(BackendUnavailable, match="layout"):
        wc.WhisperLibrary(path)
    monkeypatch.setattr(wc, "SUPPORTED_VERSIONS", ("9.9.",))
    with pytest.raises(BackendUnavailable, match="1.8.x"):
        wc.WhisperLibrary(path)


# --- numerics --------------------------------------------------------------------------------


def test_first_step_logits_close_to_transformers(hf_tiny, ggml_f16, tiny_ggml, short_mel):
    prompt = np.array([_prompt(hf_tiny.info)])
    ref = hf_tiny.step(prompt, hf_tiny.start(hf_tiny.encode(short_mel), np.array([0])))
    ours = ggml_f16.step(prompt, ggml_f16.start(ggml_f16.encode(short_mel), np.array([0])))
    off = np.abs(ours - ref).max(axis=-1)[0]
    flash = load(tiny_ggml / "f16", config=RuntimeConfig(threads=2))  # whisper.cpp's default: on
    try:
        on = np.abs(
            flash.next_token_logits(flash.encode(short_mel), [_prompt(hf_tiny.info)]) - ref[:, -1]
        ).max()
    finally:
        flash.close()
    print(
        f"ggml f16 vs hf fp32 logits max abs: flash off {off.tolist()} (sot row, last row), flash on {on:.4f}"
    )
    # Measured: flash off ~0.03-0.06, flash on ~0.27.
    assert off.max() < 0.25 and on < 1.0
    assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_step_fills_every_row_from_start_of_transcript_and_nan_before(ggml_f16, short_mel):
    info = ggml_f16.info
    enc = ggml_f16.encode(short_mel)
    previous = [info.sot_prev, 383, 4512, 318]  # a previous-text prefix
    tokens = np.array([previous + [info.sot, info.no_timestamps]])
    logits = ggml_f16.step(tokens, ggml_f16.start(enc, np.array([0])))
    assert np.isnan(logits[0, :4]).all() and np.isfinite(logits[0, 4:]).all()
    # Each row equals a fresh decode of the sequence up to it (splitting a decode is exact).
    for end in (5, 6):
        alone = ggml_f16.step(tokens[:, :end], ggml_f16.start(enc, np.array([0])))[0, -1]
        np.testing.assert_array_equal(logits[0, end - 1], alone)


def test_batched_greedy_tokens_equal_transformers(hf_tiny, ggml_f16, short_mel):
    prompts = [_prompt(hf_tiny.info)] * 2  # a batch: one whisper state per row
    mel = np.concatenate([short_mel, short_mel])
    opts = DecodeOptions(without_timestamps=True, max_new_tokens=40)
    expected = [h.tokens for h in hf_tiny.generate(hf_tiny.encode(mel), prompts, opts)]
    got = ggml_f16.generate(ggml_f16.encode(mel), prompts, opts)
    assert [h.tokens for h in got] == expected and len(expected[0]) > 20


@pytest.mark.parametrize("max_states", [None, 1])
def test_beam_search_tokens_equal_transformers(max_states, hf_tiny, tiny_ggml, short_mel):
    """One whisper state per beam (default), or one shared state that re-decodes on reorder."""
    prompts = [_prompt(hf_tiny.info)]
    opts = DecodeOptions(without_timestamps=True, max_new_tokens=30, beam_size=2)
    expected = [h.tokens for h in hf_tiny.generate(hf_tiny.encode(short_mel), prompts, opts)]
    options = {**FLASH_OFF, "max_states": max_states}
    backend = load(tiny_ggml / "f16", config=RuntimeConfig(threads=2, options=options))
    try:
        enc = backend.encode(short_mel)
        assert [h.tokens for h in backend.generate(enc, prompts, opts)] == expected
        assert len(enc.data[0].slots) == (2 if max_states is None else 1)
    finally:
        backend.close()


def test_encoder_array_is_not_observable(ggml_f16, short_mel):
    with pytest.raises(NotImplementedError, match="exposes no API"):
        ggml_f16.encoder_array(ggml_f16.encode(short_mel))


# --- long-form and WER -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_short(hf_tiny, tiny_en_dir, speech_short):
    """transformers' transcript of speech_short through the same engine."""
    return Transcriber(hf_tiny, Tokenizer.from_model_dir(tiny_en_dir, hf_tiny.info)).transcribe(
        speech_short[0]
    )


def test_transcriber_sequential_text_equals_transformers(tiny_ggml, ggml_f16, hf_short, speech_short):
    audio, text = speech_short
    got = Transcriber(ggml_f16, Tokenizer.from_model_dir(tiny_ggml / "f16", ggml_f16.info)).transcribe(audio)
    expected = hf_short
    print(f"ggml f16: {got.text!r}\nhf fp32:  {expected.text!r}")
    assert got.text == expected.text
    assert [(s.start, s.end) for s in got.segments] == [(s.start, s.end) for s in expected.segments]
    assert wer(text, got.text) <= 0.1


def test_transcriber_from_a_converted_directory(tiny_ggml, speech_short):
    audio, text = speech_short
    transcriber = Transcriber.from_model_dir(
        tiny_ggml / "q8_0", runtime=RuntimeConfig(threads=2, options=FLASH_OFF)
    )
    try:
        transcript = transcriber.transcribe(audio)
    finally:
        transcriber.backend.close()
    assert transcript.backend == "ggml" and wer(text, transcript.text) <= 0.1


@pytest.mark.parametrize("precision", ["q8_0", "q5_0", "q4_0"])
def test_quantised_wer_close_to_transformers(precision, tiny_ggml, hf_short, speech_short):
    audio, text = speech_short
    hf_text = hf_short.text
    transcriber = Transcriber.from_model_dir(tiny_ggml / precision, runtime=RuntimeConfig(threads=2))
    try:
        got = transcriber.transcribe(audio).text
    finally:
        transcriber.backend.close()
    hf_wer, our_wer = wer(text, hf_text), wer(text, got)
    print(f"tiny.en {precision} (flash on): WER {our_wer:.3f} vs hf fp32 {hf_wer:.3f}: {got!r}")
    assert our_wer <= hf_wer + QUANTISED_WER_DELTA[precision]


@pytest.mark.slow
def test_multilingual_base_detects_english_and_matches_transformers(base_dir, speech_long, tmp_path):
    audio, text = speech_long
    convert(base_dir, tmp_path / "base", "ggml", "f16", validate=False)
    hf = Transcriber.from_model_dir(base_dir, "hf", RuntimeConfig(threads=2))
    ours = Transcriber.from_model_dir(tmp_path / "base", runtime=RuntimeConfig(threads=2, options=FLASH_OFF))
    try:
        enc = ours.backend.encode(log_mel(load_audio(audio)[: 16000 * 30], 80)[None])
        probs = ours.backend.detect_language(enc)[0]
        got, expected = ours.transcribe(audio), hf.transcribe(audio)
    finally:
        ours.backend.close()
    print(
        f"base f16 WER {wer(text, got.text):.3f}, hf {wer(text, expected.text):.3f}; P(en) {probs['en']:.3f}"
    )
    assert max(probs, key=probs.get) == "en"
    assert got.language == expected.language == "en"
    assert wer(text, got.text) <= wer(text, expected.text) + 0.01


# --- configuration errors --------------------------------------------------------------------


def test_configuration_errors_are_clear(tiny_ggml):
    model_dir: Path = tiny_ggml / "q5_0"
    with pytest.raises(ConfigError, match="--precision f16"):
        load(model_dir, config=RuntimeConfig(precision="f16"))
    with pytest.raises(ConfigError, match="choose one of"):
        load(model_dir, config=RuntimeConfig(precision="int8"))
    with pytest.raises(BackendUnavailable, match="runs on the CPU only"):
        load(model_dir, config=RuntimeConfig(device="cuda"))
    with pytest.raises(ConfigError, match="flash_attn"):
        load(model_dir, config=RuntimeConfig(options={"flash": False}))
    backend = load(model_dir, config=RuntimeConfig(precision="q5_0"))
    assert backend.name == "ggml" and backend.precision == "q5_0" and backend.flash_attn is True
    backend.close()
