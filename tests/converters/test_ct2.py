"""transformers -> CTranslate2 conversion: a complete directory or nothing, a truthful
manifest, validation against transformers, and a directory faster-whisper loads unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")
pytest.importorskip("transformers")

from dwkit.converters import (
    convert,  # noqa: E402
    template,  # noqa: E402
)
from dwkit.converters import ct2 as ct2_converter  # noqa: E402
from dwkit.errors import ConversionError, ModelError, ValidationError  # noqa: E402
from dwkit.manifest import read_manifest, weights_checksum  # noqa: E402
from dwkit.model_info import ModelInfo  # noqa: E402

EXPECTED_FILES = {
    "model.bin",
    "config.json",
    "vocabulary.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "generation_config.json",
    "dwkit.json",
}


def converted(source: Path, precision: str, cache: Path, validate: bool = False) -> Path:
    """`source` converted to ct2 `precision`, cached across runs while converter and inputs are unchanged.

    Shared with tests/runtimes/test_ct2_backend.py so each model is converted once per cache.
    """
    import ctranslate2

    from dwkit.bundled import cache_lock, code_digest

    weights = sorted(source.glob("*.safetensors"))
    key = hashlib.sha256()
    key.update(code_digest("dwkit.converters.ct2", "dwkit.converters.template").encode())
    key.update(ctranslate2.__version__.encode())
    for path in weights:
        stat = path.stat()
        key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(str(validate).encode())
    out = cache / "ct2" / f"{source.name}-{precision}-{key.hexdigest()[:12]}"
    with cache_lock(out.parent / f".{out.name}.lock"):
        if not (out / "dwkit.json").is_file():
            convert(source, out, "ct2", precision, validate=validate, overwrite=True, threads=2)
    return out


@pytest.fixture(scope="module")
def tiny_en_f32(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "float32", dwkit_cache, validate=True)


def test_float32_conversion_writes_complete_directory(tiny_en_f32: Path) -> None:
    assert {p.name for p in tiny_en_f32.iterdir()} == EXPECTED_FILES
    leftovers = [p.name for p in tiny_en_f32.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert not leftovers
    ct2_config = json.loads((tiny_en_f32 / "config.json").read_text())
    assert "suppress_ids" in ct2_config  # CTranslate2's own config, not transformers'


def test_manifest_records_source_versions_model_and_validation(tiny_en_f32: Path, tiny_en_dir: Path) -> None:
    manifest = read_manifest(tiny_en_f32)
    assert manifest is not None
    assert manifest["format"] == "ct2" and manifest["precision"] == "float32"
    assert manifest["source"]["path"] == str(tiny_en_dir.resolve())
    assert manifest["source"]["weights_checksum"] == weights_checksum(tiny_en_dir)
    assert manifest["weights_checksum"] == weights_checksum(tiny_en_f32)
    assert {"dwkit", "ctranslate2", "transformers"} <= set(manifest["library_versions"])
    assert manifest["model_info"] == ModelInfo.from_hf_dir(tiny_en_dir).to_dict()
    validation = manifest["validation"]
    print(
        f"\nct2 float32 validation: logits max abs {validation['logits_max_abs']:.2e}, "
        f"encoder max abs {validation['encoder_max_abs']:.2e}, tokens equal {validation['tokens_equal']}"
    )
    assert validation["passed"] and validation["gated"]
    assert validation["logits_max_abs"] <= validation["thresholds"]["logits_atol"]
    assert validation["tokens_equal"] and len(validation["reference_tokens"]) > 10


def test_hub_snapshot_path_is_recorded_as_hub_id() -> None:
    snapshot = Path("/cache/hub/models--distil-whisper--distil-large-v3.5/snapshots/0123abcd")
    found = template.source_id(snapshot)
    assert found["hub_id"] == "distil-whisper/distil-large-v3.5" and found["revision"] == "0123abcd"
    assert "hub_id" not in template.source_id(Path("/models/mine"))


def test_faster_whisper_loads_it_unchanged(tiny_en_f32: Path, speech_short, simple_wer) -> None:
    from faster_whisper import WhisperModel

    audio, text = speech_short
    model = WhisperModel(str(tiny_en_f32), device="cpu", compute_type="default", cpu_threads=2)
    segments, _ = model.transcribe(str(audio), beam_size=1, vad_filter=False)
    hypothesis = "".join(s.text for s in segments)
    wer = simple_wer(text, hypothesis)
    print(f"\nfaster-whisper on the ct2 tiny.en dir: WER {wer:.3f} ({hypothesis.strip()!r})")
    assert wer <= 0.15


def test_128_mel_model_gets_a_preprocessor_config_faster_whisper_reads(
    random_distil128_dir: Path, tmp_path: Path
) -> None:
    """A source without preprocessor_config.json still yields n_mels=128 for faster-whisper."""
    import numpy as np
    from faster_whisper import WhisperModel

    source = tmp_path / "src"
    source.mkdir()
    for path in random_distil128_dir.iterdir():
        if path.name != "preprocessor_config.json":
            (source / path.name).symlink_to(path)
    out = tmp_path / "ct2"
    convert(source, out, "ct2", "float32", validate=False)
    assert json.loads((out / "preprocessor_config.json").read_text())["feature_size"] == 128
    model = WhisperModel(str(out), device="cpu", cpu_threads=2)
    assert model.feature_extractor.mel_filters.shape[0] == 128 == model.model.n_mels
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    segments, _ = model.transcribe(audio, language="en", beam_size=1, max_new_tokens=4, temperature=0.0)
    list(segments)  # an 80-mel front end would fail inside the encoder


def test_source_without_weights_fails_and_writes_nothing(tiny_en_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "no-weights"
    source.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json"):
        shutil.copy(tiny_en_dir / name, source / name)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="no weights"):
        convert(source, out, "ct2", "int8")
    assert list(tmp_path.iterdir()) == [source]


def test_failure_midway_leaves_no_partial_directory(tiny_en_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def half_written(source: Path, out: Path, precision: str, low_cpu_mem_usage: bool) -> None:
        (out / "model.bin").write_bytes(b"partial")
        raise ConversionError("simulated crash after a partial write")

    monkeypatch.setattr(ct2_converter, "_run_converter", half_written)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="simulated crash"):
        convert(tiny_en_dir, out, "ct2", "float32")
    assert list(tmp_path.iterdir()) == []


def test_failed_float32_validation_keeps_nothing(tiny_en_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        ct2_converter, "_run_converter", lambda s, o, p, m: (o / "model.bin").write_bytes(b"x")
    )
    monkeypatch.setattr(
        ct2_converter,
        "validate_model",
        lambda *a, **k: {"passed": False, "failures": ["greedy tokens differ from index 3"]},
    )
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="does not match transformers") as caught:
        convert(tiny_en_dir, out, "ct2", "float32")
    assert isinstance(caught.value, ValidationError)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_without_overwrite(tiny_en_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        convert(tiny_en_dir, tmp_path / "out", "ct2", "float32")


def test_unknown_precision_lists_valid_names(tiny_en_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as caught:
        convert(tiny_en_dir, tmp_path / "out", "ct2", "fp32")
    for name in ct2_converter.FORMAT.precisions:
        assert name in str(caught.value)
    with pytest.raises(ConversionError, match="does not take"):
        convert(tiny_en_dir, tmp_path / "out", "ct2", "int8", quantise_more=True)


def test_not_a_whisper_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError):
        convert(tmp_path, tmp_path.parent / f"{tmp_path.name}-out", "ct2", "float32")


def test_quantized_validation_is_recorded_not_gated(tiny_en_dir: Path, dwkit_cache: Path) -> None:
    out = converted(tiny_en_dir, "int8", dwkit_cache, validate=True)
    validation = read_manifest(out)["validation"]
    print(
        f"\nct2 int8 validation ({validation['compute_type']}): logits max abs "
        f"{validation['logits_max_abs']:.3f}, cosine {validation['logits_cosine']:.5f}, "
        f"tokens equal {validation['tokens_equal']}"
    )
    assert validation["passed"] and not validation["gated"] and validation["failures"] == []
    assert validation["compute_type"].startswith("int8")
    assert validation["logits_cosine"] > 0.99
