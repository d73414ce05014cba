"""Speculative decoding: with a draft, greedy output is the main model's own, token for token."""

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from dwkit.api import load as dwkit_load
from dwkit.audio import load_audio
from dwkit.cli.main import entry as dwkit_cli
from dwkit.decoding.assisted import AssistedBackend
from dwkit.decoding.options import DecodeOptions
from dwkit.decoding.speculative import DraftSchedule, speculative_decode
from dwkit.errors import ConfigError
from dwkit.features import log_mel
from dwkit.runtimes import RuntimeConfig, load
from dwkit.runtimes.hf import HFBackend
from dwkit.synthetic import make_student


@pytest.fixture(scope="module")
def base_student(base_dir, tmp_path_factory) -> Path:
    """base with decoder layers 0 and 5 only (distil-whisper's student initialisation)."""
    return make_student(base_dir, tmp_path_factory.mktemp("draft") / "base-student")


@pytest.fixture(scope="module")
def base_pair(base_dir, base_student):
    main = load(base_dir, "hf", RuntimeConfig(threads=2))
    draft = load(base_student, "hf", RuntimeConfig(threads=2))
    return main, draft


@pytest.fixture(scope="module")
def short_mel(speech_short) -> np.ndarray:
    return log_mel(load_audio(speech_short[0]), 80)[None]


@pytest.fixture(scope="module")
def speech_40s(speech_short, dwkit_cache) -> Path:
    """Eight sentences with pauses, ~40 s: two sequential windows, two chunks."""
    from dwkit.speech import SENTENCES, cached_speech

    return cached_speech(list(SENTENCES[:8]), dwkit_cache / "speech")  # speech_short: espeak-ng is here


def _prompt(info, timestamps: bool) -> list[int]:
    prompt = [info.sot, info.lang_to_id["<|en|>"], info.transcribe] if info.multilingual else [info.sot]
    return prompt if timestamps else [*prompt, info.no_timestamps]


def _pair(main, draft, main_dir, draft_dir, tokens=4, adaptive=False) -> AssistedBackend:
    return AssistedBackend(main, draft, DraftSchedule(tokens, adaptive), (Path(main_dir), Path(draft_dir)))


def _same(alone, drafted) -> None:
    for a, b in zip(alone, drafted, strict=True):
        assert b.tokens == a.tokens
        assert b.finished == a.finished
        assert b.sum_logprob == pytest.approx(a.sum_logprob, abs=1e-3)
        assert b.no_speech_prob == pytest.approx(a.no_speech_prob, abs=1e-5)


@pytest.mark.parametrize("timestamps", [True, False])
def test_layer_dropped_draft_gives_the_main_models_tokens(
    base_pair, base_dir, base_student, short_mel, timestamps
):
    main, draft = base_pair
    pair = _pair(main, draft, base_dir, base_student)
    assert pair.shares_encoder  # the student keeps the teacher's encoder: the digests agree
    prompt = _prompt(main.info, timestamps)
    opts = DecodeOptions(without_timestamps=not timestamps)
    alone = main.generate(main.encode(short_mel), [prompt], opts)
    drafted = pair.generate(pair.encode(short_mel), [prompt], opts)
    assert len(alone[0].tokens) > 10
    _same(alone, drafted)
    assert pair.stats.proposed > 0 and pair.stats.main_steps > 0


def test_a_perfect_draft_is_fully_accepted(base_pair, base_dir, short_mel):
    main, _ = base_pair
    twin = load(base_dir, "hf", RuntimeConfig(threads=2))
    pair = _pair(main, twin, base_dir, base_dir, tokens=3, adaptive=True)
    prompt = _prompt(main.info, True)
    alone = main.generate(main.encode(short_mel), [prompt], DecodeOptions())
    drafted = pair.generate(pair.encode(short_mel), [prompt], DecodeOptions())
    _same(alone, drafted)
    stats = pair.stats
    assert stats.acceptance_rate == 1.0
    assert stats.tokens == len(alone[0].tokens) + 1  # end-of-text included
    # the adaptive schedule grows past 3 tokens, so far fewer main steps than tokens
    assert stats.tokens_per_main_step > 4


class _NoRollback(HFBackend):
    """An hf backend that, like onnx/ggml/trt today, has no native cache truncation."""

    def truncate(self, cache, length):  # type: ignore[no-untyped-def]
        return None


def test_rebuilding_the_cache_where_a_backend_cannot_truncate(base_pair, base_dir, base_student, short_mel):
    main, draft = base_pair
    rebuilt = [copy.copy(b) for b in (main, draft)]
    for b in rebuilt:
        b.__class__ = _NoRollback
    pair = _pair(*rebuilt, base_dir, base_student)
    prompt = _prompt(main.info, True)
    _same(
        main.generate(main.encode(short_mel), [prompt], DecodeOptions()),
        pair.generate(pair.encode(short_mel), [prompt], DecodeOptions()),
    )
    assert pair.stats.accepted < pair.stats.proposed  # rejections happened: the rollback ran


def test_batched_rows_and_a_token_budget(base_pair, base_dir, base_student, short_mel):
    main, draft = base_pair
    pair = _pair(main, draft, base_dir, base_student, tokens=6)
    silence = log_mel(np.zeros(16000 * 4, dtype=np.float32), 80)[None]
    mel = np.concatenate([short_mel, silence])
    prompt = _prompt(main.info, False)
    for opts in (
        DecodeOptions(without_timestamps=True),
        DecodeOptions(without_timestamps=True, max_new_tokens=7),
    ):
        alone = main.generate(main.encode(mel), [prompt, prompt], opts)
        _same(alone, pair.generate(pair.encode(mel), [prompt, prompt], opts))
    assert len(alone[0].tokens) == 7 and not alone[0].finished


def test_fallback_windows_sample_with_the_main_model_alone(base_pair, base_dir, base_student, short_mel):
    main, draft = base_pair
    pair = _pair(main, draft, base_dir, base_student)
    opts = DecodeOptions(temperature=0.8, seed=3)
    prompt = _prompt(main.info, True)
    alone = main.generate(main.encode(short_mel), [prompt], opts)
    drafted = pair.generate(pair.encode(short_mel), [prompt], opts)
    assert drafted[0].tokens == alone[0].tokens and drafted[0].temperature == 0.8
    assert pair.stats.proposed == 0
    with pytest.raises(ConfigError, match="greedy only"):
        speculative_decode(
            main,
            main.encode(short_mel),
            draft,
            draft.encode(short_mel),
            [prompt],
            replace(opts, temperature=0.0, beam_size=2),
            DraftSchedule(),
        )


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_transcripts_identical_with_and_without_the_draft(base_dir, base_student, speech_40s, mode):
    path = speech_40s
    common = {"model": str(base_dir), "language": "en", "mode": mode, "threads": 2}
    alone = dwkit_load(str(base_dir), **common).transcribe(path)
    drafted_engine = dwkit_load(str(base_dir), **common, draft={"model": str(base_student), "tokens": 4})
    drafted = drafted_engine.transcribe(path)
    assert drafted.text == alone.text and len(alone.text) > 200
    assert [s.tokens for s in drafted.segments] == [s.tokens for s in alone.segments]
    assert [(s.start, s.end) for s in drafted.segments] == [(s.start, s.end) for s in alone.segments]
    stats = drafted_engine.draft_stats
    assert stats is not None and stats.proposed > 0 and 0 <= stats.acceptance_rate <= 1


def test_random_weight_pair(random_tiny80_dir, tmp_path):
    student = make_student(random_tiny80_dir, tmp_path / "student")
    main, draft = load(random_tiny80_dir, "hf"), load(student, "hf")
    pair = _pair(main, draft, random_tiny80_dir, student, tokens=3)
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((2, 80, 3000)).astype(np.float32)
    prompt = _prompt(main.info, True)
    opts = DecodeOptions(max_new_tokens=40)
    alone = main.generate(main.encode(mel), [prompt, prompt], opts)
    _same(alone, pair.generate(pair.encode(mel), [prompt, prompt], opts))
    assert pair.stats.proposed > 0


def test_a_draft_with_another_encoder_runs_its_own(random_tiny80_dir, tmp_path):
    student = make_student(random_tiny80_dir, tmp_path / "student")
    weights = load_file(str(student / "model.safetensors"))
    weights["model.encoder.layers.0.fc1.weight"] = weights["model.encoder.layers.0.fc1.weight"] * 1.5
    save_file(weights, str(student / "model.safetensors"), metadata={"format": "pt"})
    main, draft = load(random_tiny80_dir, "hf"), load(student, "hf")
    pair = _pair(main, draft, random_tiny80_dir, student, tokens=3)
    assert not pair.shares_encoder  # same names and shapes, one tensor changed: not assumed equal
    mel = np.random.default_rng(1).standard_normal((1, 80, 3000)).astype(np.float32)
    enc = pair.encode(mel)
    assert enc.data.draft is not enc.data.main
    opts = DecodeOptions(max_new_tokens=30)
    _same(main.generate(main.encode(mel), [_prompt(main.info, True)], opts),
          pair.generate(enc, [_prompt(main.info, True)], opts))  # fmt: skip


def test_mismatched_tokenizers_are_refused(
    base_dir, tiny_en_dir, base_student, tmp_path, speech_short, capsys
):
    main = load(base_dir, "hf")
    with pytest.raises(ConfigError, match=r"vocab_size differs \(main 51865, draft 51864\)"):
        _pair(main, load(tiny_en_dir, "hf"), base_dir, tiny_en_dir)
    renamed = tmp_path / "renamed"
    shutil.copytree(base_student, renamed)
    tokenizer = json.loads((renamed / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    first, second = (next(t for t, i in vocab.items() if i == n) for n in (1000, 1001))
    vocab[first], vocab[second] = 1001, 1000  # same size and special tokens, two ids swapped
    (renamed / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConfigError, match="tokenizer.json differs"):
        _pair(main, load(renamed, "hf"), base_dir, renamed)
    argv = ["transcribe", str(speech_short[0]), "--model", str(base_dir), "--draft-model", str(tiny_en_dir)]
    assert dwkit_cli(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vocab_size differs" in err


def test_beam_search_is_refused(base_dir, base_student, speech_short, capsys):
    argv = ["transcribe", str(speech_short[0]), "--model", str(base_dir), "--draft-model", str(base_student)]
    assert dwkit_cli([*argv, "--beam-size", "2"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "greedy only" in err


def test_ct2_drafts_through_generate_but_cannot_be_the_main_model(tiny_en_dir, dwkit_cache, short_mel):
    pytest.importorskip("ctranslate2")
    from tests.converters.test_ct2 import converted

    ct2_dir = converted(tiny_en_dir, "int8", dwkit_cache)
    ct2, hf = load(ct2_dir), load(tiny_en_dir, "hf")
    with pytest.raises(ConfigError, match="cannot be the main model.*no step"):
        _pair(ct2, hf, ct2_dir, tiny_en_dir)
    pair = _check_pair(hf, ct2, tiny_en_dir, ct2_dir, short_mel)
    assert pair.stats.acceptance_rate > 0.8  # int8 of the same model: mostly the same choices
    no_ts = _prompt(hf.info, False)
    opts = DecodeOptions(without_timestamps=True)
    _same(
        hf.generate(hf.encode(short_mel), [no_ts], opts), pair.generate(pair.encode(short_mel), [no_ts], opts)
    )


@pytest.fixture(scope="module")
def tiny_student(tiny_en_dir, tmp_path_factory) -> Path:
    return make_student(tiny_en_dir, tmp_path_factory.mktemp("draft") / "tiny-student")


def _check_pair(main, draft, main_dir, draft_dir, mel) -> AssistedBackend:
    pair = _pair(main, draft, main_dir, draft_dir, tokens=4)
    assert not pair.shares_encoder  # another runtime: the draft runs its own encoder
    prompt = _prompt(main.info, True)
    _same(
        main.generate(main.encode(mel), [prompt], DecodeOptions()),
        pair.generate(pair.encode(mel), [prompt], DecodeOptions()),
    )
    assert pair.stats.proposed > 0
    return pair


def test_onnx_main_and_onnx_draft(tiny_en_dir, tiny_student, dwkit_cache, short_mel):
    pytest.importorskip("onnxruntime")
    from tests.converters.test_onnx import converted

    onnx_dir = converted(tiny_en_dir, "fp32", dwkit_cache)
    onnx, hf = load(onnx_dir), load(tiny_en_dir, "hf")
    _check_pair(onnx, load(tiny_student, "hf"), onnx_dir, tiny_student, short_mel)
    pair = _check_pair(hf, onnx, tiny_en_dir, onnx_dir, short_mel)
    assert pair.stats.acceptance_rate > 0.9  # an fp32 export of the same model: nearly always right


def test_ggml_main_and_ggml_draft(tiny_en_dir, tiny_student, tmp_path, short_mel):
    pytest.importorskip("pywhispercpp")
    from dwkit.converters import convert

    ggml_dir = tmp_path / "ggml"
    convert(tiny_en_dir, ggml_dir, "ggml", "f16", validate=False)
    whisper_cpp = load(ggml_dir, config=RuntimeConfig(options={"flash_attn": False}))
    try:
        _check_pair(whisper_cpp, load(tiny_student, "hf"), ggml_dir, tiny_student, short_mel)
        _check_pair(load(tiny_en_dir, "hf"), whisper_cpp, tiny_en_dir, ggml_dir, short_mel)
    finally:
        whisper_cpp.close()
