"""The command-line tools: output formats, and one clear line for every bad input."""

import json
import shutil
import subprocess
import sys

import pytest

from dwkit import __version__
from dwkit.cli.dwconvert import entry as dwconvert
from dwkit.cli.main import entry as dwkit


def test_transcribe_json_to_stdout(tiny_en_dir, speech_short, capsys):
    path, spoken = speech_short
    assert dwkit(["transcribe", str(path), "--model", str(tiny_en_dir), "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"text", "language", "duration", "segments"}
    assert data["duration"] == pytest.approx(7.6, abs=0.5)
    seg = data["segments"][0]
    assert set(seg) >= {"start", "end", "text", "tokens", "avg_logprob", "no_speech_prob"}
    assert "dog" in data["text"].lower() or len(data["text"]) > 20


def test_transcribe_writes_srt_files_atomically(tiny_en_dir, speech_short, tmp_path):
    path, _ = speech_short
    out = tmp_path / "subs.srt"
    assert dwkit(["transcribe", str(path), "--model", str(tiny_en_dir), "-f", "srt", "-o", str(out)]) == 0
    assert out.read_text().startswith("1\n00:00:00,000 --> ")
    assert [p.name for p in tmp_path.iterdir()] == ["subs.srt"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.wav", None, "no such file"),
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"this is not audio\n" * 50, "not an audio file"),
    ],
)
def test_bad_audio_is_one_line_and_exit_1(tiny_en_dir, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert dwkit(["transcribe", str(path), "--model", str(tiny_en_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and err.startswith("dwkit: error:")


def test_model_without_weights(tiny_en_dir, speech_short, tmp_path, capsys):
    broken = tmp_path / "noweights"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(broken)]) == 1
    assert "no weights" in capsys.readouterr().err


def test_wrong_n_mels(tiny_en_dir, speech_short, tmp_path, capsys):
    broken = tmp_path / "mels"
    shutil.copytree(tiny_en_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_mel_bins"] = 128
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "dwkit.json").unlink()
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(broken)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "could not load" in err


def test_process_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dwkit.cli.main",
            "transcribe",
            str(tmp_path / "nope.wav"),
            "--model",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "no such file" in result.stderr


def test_versions(capsys):
    for tool in (dwkit, dwconvert):
        with pytest.raises(SystemExit) as exc:
            tool(["--version"])
        assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_dwconvert_imports_ct2_and_refuses_bad_combinations(tmp_path, capsys):
    from dwkit.bundled import bundled_source

    src = bundled_source("tiny.en")
    out = tmp_path / "tiny-hf"
    assert dwconvert(["--from", "ct2", "--to", "hf", str(src.side_dir), str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "dwkit.json").is_file()
    assert dwconvert(["--from", "ct2", "--to", "hf", str(src.side_dir), str(out)]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    assert dwconvert(["--to", "hf", str(out), str(tmp_path / "x")]) == 1
    assert "--from ct2" in capsys.readouterr().err
