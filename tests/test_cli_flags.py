"""Command-line flags get the config's validation, and cannot swallow the audio path
(regressions of the bad-input sweep: these failed on the main branch before the options schema)."""

from __future__ import annotations

import json

import pytest

from dwkit.cli.main import entry as dwkit


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dwkit: error:") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beam-size", "-1"], "--beam-size: decode.beam_size = -1: must be >= 1"),
        (["--beam-size", "0"], "--beam-size: decode.beam_size = 0: must be >= 1"),
        (
            ["--no-speech-threshold", "5"],
            "--no-speech-threshold: longform.no_speech_threshold = 5.0: must be <= 1",
        ),
        (["--threads", "-3"], "--threads: threads = -3: must be >= 0"),
        (["--beam-size", "many"], 'decode.beam_size: expected an integer, got "many"'),
        (["--chunk-length", "40", "--mode", "chunked"], "longform.chunk_length_s = 40.0: must be <= 30"),
        (["--device", "gpu"], 'device = "gpu": use cpu, cuda or cuda:N'),
    ],
)
def test_flags_are_validated_like_config_keys(tiny_en_dir, speech_short, capsys, flags, message):
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(tiny_en_dir), *flags]) == 1
    assert message in _one_error_line(capsys)


def test_a_space_separated_temperature_list_cannot_swallow_the_audio(tiny_en_dir, speech_short, capsys):
    audio = str(speech_short[0])
    assert dwkit(["transcribe", "--temperature", "0", "0.2", audio, "--model", str(tiny_en_dir)]) == 1
    err = _one_error_line(capsys)
    assert "0.2: no such audio file" in err and "--temperature 0,0.2" in err


def test_flags_alone_run_backend_auto_and_comma_temperatures(tiny_en_dir, speech_short, capsys):
    argv = ["transcribe", str(speech_short[0]), "--model", str(tiny_en_dir), "-f", "json"]
    assert dwkit([*argv, "--backend", "auto", "--temperature", "0,0.2", "--max-new-tokens", "40"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "northern platform" in data["text"].lower()
