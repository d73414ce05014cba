"""`dwkit info`, `dwkit backends`, and `dwkit transcribe --config` (explicit flags win)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from dwkit import runtimes
from dwkit.cli.main import build_parser
from dwkit.cli.main import entry as dwkit
from dwkit.cli.options import config_flags
from dwkit.config import Config

# --- dwkit info -------------------------------------------------------------------------------


def test_info_table_of_a_checkpoint(tiny_en_dir, capsys):
    assert dwkit(["info", str(tiny_en_dir)]) == 0
    out = capsys.readouterr().out
    assert "format      hf (precision fp32)" in out
    assert "80 mels, d_model 384, 4 encoder + 4 decoder layers" in out and "English-only" in out
    assert "source      tiny.en" in out and "dwkit.converters.ct2_import" in out
    assert "model.safetensors" in out and "151.1 MB" in out
    assert out.rstrip().endswith("problems    none")


def test_info_json_and_verify(tiny_en_dir, capsys):
    assert dwkit(["info", str(tiny_en_dir), "--json", "--verify"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "hf" and report["precision"] == "fp32"
    assert report["shape"]["vocab_size"] == 51864 and report["shape"]["multilingual"] is False
    names = {f["name"]: f["bytes"] for f in report["files"]}
    assert names["model.safetensors"] == (tiny_en_dir / "model.safetensors").stat().st_size
    assert report["total_bytes"] == sum(names.values())
    assert report["manifest"]["source"]["name"] == "tiny.en"
    assert "transformers" in report["manifest"]["library_versions"]
    assert report["checksum_verified"] is True and report["problems"] == []


def test_info_of_a_converted_model_shows_its_validation(tmp_path, tiny_en_dir, capsys):
    converted = tmp_path / "ct2"
    shutil.copytree(tiny_en_dir, converted, ignore=shutil.ignore_patterns("*.safetensors"))
    manifest = json.loads((converted / "dwkit.json").read_text())
    manifest.update(
        format="ct2",
        precision="int8",
        model_file="model.bin",
        validation={"passed": True, "reference": "hf fp32", "tokens_equal": True, "logits_max_abs": 0.77},
    )
    (converted / "dwkit.json").write_text(json.dumps(manifest))
    (converted / "model.bin").write_bytes(b"\0" * 1000)
    assert dwkit(["info", str(converted)]) == 0
    out = capsys.readouterr().out
    assert "format      ct2 (precision int8)" in out
    assert "validation  passed against hf fp32, tokens equal, logits_max_abs 0.77" in out
    (converted / "model.bin").unlink()
    assert dwkit(["info", str(converted), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"] == [
        "model.bin: missing (an incomplete copy or conversion?)"
    ]


def test_info_finds_truncated_weights_from_the_header(tiny_en_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with open(tiny_en_dir / "model.safetensors", "rb") as src:
        (broken / "model.safetensors").write_bytes(src.read(2_000_000))
    assert dwkit(["info", str(broken), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "model.safetensors: truncated (2000000 bytes; its header describes" in out
    assert "weights checksum differs" in out and "verified    DIFFERS" in out


def test_info_of_no_model_is_one_line(tmp_path, capsys):
    assert dwkit(["info", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip() == f"dwkit: error: {tmp_path / 'nope'}: no such model directory"
    assert dwkit(["info", str(tmp_path)]) == 1
    assert "neither a dwkit model" in capsys.readouterr().err


# --- dwkit backends ---------------------------------------------------------------------------


def test_backends_lists_every_registered_backend_with_a_reason(capsys, monkeypatch):
    from dwkit import devices

    monkeypatch.setattr(devices, "nvidia_gpu_present", lambda: False)
    assert dwkit(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == list(runtimes.names())
    hf = rows["hf"]
    assert hf["usable"] and hf["devices"] == ["cpu"] and "bf16" in hf["precisions"] and hf["reason"] is None
    assert not rows["trt"]["usable"] and "NVIDIA GPU" in rows["trt"]["reason"]
    for row in rows.values():
        assert row["usable"] == bool(row["devices"]) and (row["usable"] or row["reason"])
    assert dwkit(["backends"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["backend", "usable", "devices"]
    assert any(line.startswith("trt") and " no " in line for line in table)


def test_backends_explains_a_backend_whose_library_is_missing(monkeypatch):
    import importlib.util

    from dwkit.cli.backends import survey

    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "ctranslate2", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ctranslate2" else real_find_spec(name, *a),
    )
    rows = {row["name"]: row for row in survey()}
    assert not rows["ct2"]["usable"] and "dwkit[ct2]" in rows["ct2"]["reason"]


# --- dwkit transcribe --config ----------------------------------------------------------------


def _args(*argv: str):
    return build_parser().parse_args(["transcribe", "a.wav", *argv])


def _flag_overrides(args) -> dict:
    """The config keys the flags set, with their values as the validated Config holds them."""
    flags = config_flags(args)
    config = Config.from_dict({}, flags=flags, check=False)
    overrides: dict = {}
    for key in flags:
        table, _, name = key.rpartition(".")
        value = getattr(getattr(config, table) if table else config, name)
        (overrides.setdefault(table, {}) if table else overrides)[name] = value
    return overrides


def test_only_flags_typed_override_the_config():
    assert _flag_overrides(_args()) == {}
    assert _flag_overrides(_args("--config", "c.toml")) == {}
    # typed at their default values: still explicit, so they still win over the file
    overrides = _flag_overrides(_args("--device", "cpu", "--beam-size", "1", "--mode", "sequential"))
    assert overrides == {"device": "cpu", "mode": "sequential", "decode": {"beam_size": 1}}
    # --temperature takes a comma list now (a space-separated one swallowed the audio path)
    overrides = _flag_overrides(_args("--no-timestamps", "--temperature", "0,0.4", "-f", "json"))
    assert overrides == {
        "output_format": "json",
        "longform": {"return_timestamps": False, "temperatures": [0.0, 0.4]},
    }


@pytest.fixture
def service_config(tmp_path: Path, tiny_en_dir: Path) -> Path:
    path = tmp_path / "prod.toml"
    # device cuda would fail on this machine: each test overrides it by flag or environment
    path.write_text(
        f'model = "{tiny_en_dir}"\ndevice = "cuda"\noutput_format = "json"\n[decode]\nmax_new_tokens = 40\n'
    )
    return path


def test_transcribe_with_config_flags_and_environment(service_config, speech_short, capsys, monkeypatch):
    audio = str(speech_short[0])
    assert dwkit(["transcribe", audio, "--config", str(service_config), "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)  # output_format from the file
    assert "northern platform" in data["text"].lower()
    monkeypatch.setenv("DWKIT_DEVICE", "cpu")
    assert dwkit(["transcribe", audio, "--config", str(service_config), "-f", "txt"]) == 0
    assert capsys.readouterr().out.strip() == data["text"].strip()


def test_transcribe_with_a_bad_config_is_one_line(service_config, speech_short, capsys, monkeypatch):
    monkeypatch.setenv("DWKIT_DECODE__BEAM_SIZE", "many")
    assert dwkit(["transcribe", str(speech_short[0]), "--config", str(service_config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "dwkit: error: environment variable DWKIT_DECODE__BEAM_SIZE: decode.beam_size: "
        'expected an integer, got "many" (string)'
    )
