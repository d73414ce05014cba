"""Bad inputs fail with one clear line, long audio runs in flat memory, and an interrupted
conversion never leaves a half-written model where the finished one would be."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from dwkit.audio import AudioStream, load_audio
from dwkit.cli.main import entry as dwkit
from dwkit.errors import AudioError, ConfigError, ModelError
from dwkit.features import N_SAMPLES, log_mel, log_mel_stream, recording_mel
from tests.audio_files import claim_flac_samples, encode

REPO = Path(__file__).resolve().parent.parent


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("dwkit: error:") and "\n" not in err and "Traceback" not in err, err
    return err


# --- corrupt model files ---------------------------------------------------------------------


@pytest.fixture
def truncated_tiny_en(tiny_en_dir: Path, tmp_path: Path) -> Path:
    """A copy of tiny.en whose model.safetensors stops a third of the way in."""
    broken = tmp_path / "truncated"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    weights = tiny_en_dir / "model.safetensors"
    with open(weights, "rb") as src, open(broken / "model.safetensors", "wb") as dst:
        dst.write(src.read(weights.stat().st_size // 3))
    return broken


def test_truncated_weights_are_one_model_error_line(truncated_tiny_en, speech_short, capsys):
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(truncated_tiny_en)]) == 1
    assert "could not load" in _one_error_line(capsys)


def test_truncated_weights_through_the_api_raise_model_error(truncated_tiny_en):
    import dwkit as api

    with pytest.raises(ModelError, match="could not load"):
        api.load(truncated_tiny_en)


def test_corrupt_manifest_is_one_line(tiny_en_dir, tmp_path, speech_short, capsys):
    broken = tmp_path / "badmanifest"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "dwkit.json").write_text('{"format": "hf", ')
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(broken)]) == 1
    assert "unreadable manifest" in _one_error_line(capsys)


# --- a config pointing at the wrong kind of model ----------------------------------------------


def _converted(tmp_path: Path, fmt: str, precision: str) -> Path:
    """A directory that says it is a `fmt` conversion (checks run before any weights are read)."""
    model = tmp_path / f"model-{fmt}"
    model.mkdir()
    (model / "dwkit.json").write_text(
        json.dumps({"manifest_version": 1, "format": fmt, "precision": precision})
    )
    return model


def test_config_backend_that_does_not_match_the_converted_model(tmp_path, speech_short, capsys):
    model = _converted(tmp_path, "ct2", "int8")
    config = tmp_path / "prod.toml"
    config.write_text(f'model = "{model}"\nbackend = "onnx"\n')
    import dwkit as api

    with pytest.raises(ConfigError, match=r"prod\.toml: backend = \"onnx\" does not match.*ct2 format"):
        api.load(config)
    assert dwkit(["transcribe", str(speech_short[0]), "--config", str(config)]) == 1
    err = _one_error_line(capsys)
    assert "prod.toml" in err and "backend" in err and "ct2" in err


def test_config_precision_the_converted_model_does_not_hold(tmp_path):
    model = _converted(tmp_path, "ggml", "q8_0")
    from dwkit.config import Config

    with pytest.raises(ConfigError, match=r"precision = \"f16\".*holds ggml q8_0"):
        Config.from_dict({"model": str(model), "backend": "ggml", "precision": "f16"}, source="svc.toml")


# --- unreadable, empty and odd audio -----------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "is a directory"),
        (lambda p: (p / "empty.wav").write_bytes(b"") or p / "empty.wav", "empty"),
        (lambda p: _wav(p / "zero.wav", np.zeros(0)), "no audio samples"),
    ],
)
def test_bad_audio_is_one_line_before_the_model_loads(tmp_path, capsys, make, message):
    # --model points nowhere: the audio must be refused first
    assert dwkit(["transcribe", str(make(tmp_path)), "--model", str(tmp_path / "no-model")]) == 1
    assert message in _one_error_line(capsys)


def test_zero_length_audio_through_every_input_kind(tmp_path):
    zero = _wav(tmp_path / "zero.wav", np.zeros(0))
    for source in (zero, zero.read_bytes(), io.BytesIO(zero.read_bytes())):
        with pytest.raises(AudioError, match="no audio samples"):
            recording_mel(source, 80)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(np.zeros(0, dtype=np.float32))


@pytest.fixture
def unreadable_wav():
    """A wav file nobody may read, in a folder anyone may traverse (so only the file's mode bites)."""
    folder = Path(tempfile.mkdtemp(prefix="dwkit-perm-", dir="/tmp"))
    folder.chmod(0o711)
    secret = _wav(folder / "secret.wav", np.zeros(1600))
    secret.chmod(0o000)
    yield secret
    shutil.rmtree(folder)


def test_permission_denied_audio_is_an_audio_error(unreadable_wav):
    """Run as an unprivileged user (root reads anything): drop to `nobody` in a child process."""
    secret = unreadable_wav
    script = textwrap.dedent(
        f"""
        import os
        import av  # imported before dropping privileges: the interpreter's files stay readable
        from dwkit.audio import load_audio, AudioStream
        from dwkit.errors import AudioError
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)
        for fn in (load_audio, AudioStream):
            try:
                fn({str(secret)!r})
            except AudioError as exc:
                print("AudioError:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all("permission denied" in line for line in lines), result.stdout


def test_audio_stream_joins_to_load_audio_and_reads_once(tmp_path):
    path = _wav(tmp_path / "tone.wav", 0.3 * np.sin(np.arange(44100 * 3) * 0.03), rate=44100)
    stream = AudioStream(path)
    assert stream.expected_samples == pytest.approx(48000, abs=10)
    blocks = list(stream)
    assert len(blocks) > 1 and all(b.dtype == np.float32 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), load_audio(path))
    with pytest.raises(AudioError, match="already read"):
        list(stream)


# --- streamed features: identical, and flat in memory ------------------------------------------


@pytest.mark.parametrize(
    "seconds, n_mels",
    # around the first 60 s block (6000 frames + the one after it), and several blocks
    [(7.0, 80), (59.999, 128), (60.01, 80), (60.02, 128), (121.7, 80)],
)
def test_streamed_log_mel_is_bit_identical(seconds, n_mels):
    rng = np.random.default_rng(int(seconds * 1000) + n_mels)
    samples = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    cuts = np.cumsum(rng.integers(1, 20000, size=200))
    blocks = np.split(samples, cuts[cuts < len(samples)])
    mel, n = log_mel_stream(iter(blocks), n_mels)
    assert n == len(samples)
    assert np.array_equal(mel, log_mel(samples, n_mels, pad_to=N_SAMPLES))


def test_recording_mel_of_a_file_equals_log_mel_of_its_samples(tmp_path):
    path = _wav(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(16000 * 75) * 0.1)
    streamed = recording_mel(path, 80)
    samples = load_audio(path)
    assert streamed.n_samples == len(samples)
    assert np.array_equal(streamed.mel, log_mel(samples, 80))


_PEAK_RSS = """
import resource, sys
from pathlib import Path
from dwkit.decoding.options import Hypothesis
from dwkit.longform.options import LongformOptions
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput
from dwkit.tokenizer import Tokenizer
from dwkit.transcriber import Transcriber


class SilentBackend:
    # Encodes nothing and hears silence in every window: what is measured is the engine's
    # own memory (audio, features, windows), not a model's.
    name = "silent"

    def __init__(self, info):
        self.info, self.windows = info, 0

    def encode(self, mel):
        self.windows += mel.shape[0]
        return EncoderOutput(float(mel.mean()), mel.shape[0])

    def select(self, enc, rows):
        return EncoderOutput(enc.data, len(rows))

    def generate(self, enc, prompts, opts):
        return [Hypothesis([], -5.0, -5.0, 0.99, opts.temperature) for _ in prompts]

    def detect_language(self, enc):
        return [{"en": 1.0}] * enc.batch_size


model_dir, audio = Path(sys.argv[1]), sys.argv[2]
info = ModelInfo.from_model_dir(model_dir)
backend = SilentBackend(info)
transcriber = Transcriber(backend, Tokenizer.from_model_dir(model_dir, info), LongformOptions())
transcript = transcriber.transcribe(audio)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
status = Path("/proc/self/status")
if status.exists():
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    peak = int(line.split()[1]) * 1024
else:  # macOS: ru_maxrss is this process's own, in bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, transcript.duration, backend.windows)
"""


def test_sequential_mode_memory_is_flat_in_audio_length(tiny_en_dir, tmp_path):
    """Peak RSS for 10 minutes stays within the log-mel's own growth of that for 1 minute.

    Holding the decoded audio would add ~35 MB of float32 samples per extra 9 minutes, plus
    the decoder's block list and the float64 padded copy (measured: +190 MB); the streamed
    path adds the mel (80 x 54000 frames x 4 B = 17 MB) and allocator slack (measured: +39 MB).
    """
    peaks = {}
    for minutes in (1, 10):
        t = np.arange(16000 * 60 * minutes)
        path = _wav(tmp_path / f"{minutes}min.wav", 0.3 * np.sin(t * 0.05))
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(tiny_en_dir), str(path)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        peak, duration, windows = result.stdout.split()
        assert float(duration) == pytest.approx(60 * minutes) and int(windows) == 2 * minutes
        peaks[minutes] = int(peak)
        path.unlink()
    mel_growth = 80 * 100 * 60 * 9 * 4
    assert peaks[10] - peaks[1] < mel_growth + 40e6, peaks


# --- interrupted conversions ---------------------------------------------------------------------


def _partials(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def test_conversion_failing_midway_leaves_no_output(tmp_path, monkeypatch):
    """The real checkpoint writer fills the temporary directory, then Ctrl-C arrives."""
    from dwkit.bundled import bundled_source
    from dwkit.converters import ct2_import, hf_files

    try:
        source = bundled_source("tiny.en")
    except ModelError as exc:
        pytest.skip(str(exc))
    real = hf_files.write_hf_checkpoint
    written: list[str] = []

    def write_then_interrupt(tmp, *args, **kwargs):
        real(tmp, *args, **kwargs)
        written.extend(p.name for p in Path(tmp).iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(hf_files, "write_hf_checkpoint", write_then_interrupt)  # the importers' writer
    with pytest.raises(KeyboardInterrupt):
        ct2_import.import_ct2(source.side_dir, tmp_path / "out", model_bin=source.parts[0])
    assert "model.safetensors" in written  # it really was half-way: files existed
    assert not (tmp_path / "out").exists() and not _partials(tmp_path)


_KILLABLE_IMPORT = """
import sys, time
from pathlib import Path
from dwkit.bundled import bundled_source
from dwkit.converters import ct2_import, hf_files

real = hf_files.write_hf_checkpoint

def write_then_wait(tmp, *args, **kwargs):
    real(tmp, *args, **kwargs)
    Path(sys.argv[2]).touch()  # tell the test the output is half-done
    time.sleep(120)

hf_files.write_hf_checkpoint = write_then_wait
source = bundled_source("tiny.en")
ct2_import.import_ct2(source.side_dir, Path(sys.argv[1]), model_bin=source.parts[0])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_killed_conversion_never_leaves_the_output_dir(tmp_path, sig):
    from dwkit.bundled import bundled_source

    try:
        bundled_source("tiny.en")
    except ModelError as exc:
        pytest.skip(str(exc))
    out, marker = tmp_path / "out", tmp_path / "halfway"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_IMPORT, str(out), str(marker)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the conversion never reached its midpoint"
            time.sleep(0.1)
        assert _partials(tmp_path) and not out.exists()
        os.kill(child.pid, sig)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert not out.exists()
    if sig == signal.SIGINT:  # Python unwinds: the temporary directory is removed too
        assert not _partials(tmp_path)
    # SIGKILL cannot be caught: a hidden .out.partial-* directory may remain beside OUT,
    # never OUT itself, so nothing can mistake it for a finished model; the next conversion
    # to OUT removes it (test_the_next_conversion_sweeps_partials_whose_process_died).


def test_sigterm_ed_conversion_removes_its_temporary_directory(tmp_path):
    """SIGTERM (kill, systemd, docker stop) used to leave a hidden .out.partial-* forever."""
    from dwkit.bundled import bundled_source

    try:
        bundled_source("tiny.en")
    except ModelError as exc:
        pytest.skip(str(exc))
    out, marker = tmp_path / "out", tmp_path / "halfway"
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE_IMPORT, str(out), str(marker)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert _partials(tmp_path)
        child.terminate()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM
    assert not out.exists() and not _partials(tmp_path)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_conversion_sweeps_partials_whose_process_died(tmp_path):
    """What SIGKILL leaves behind is removed by the next run to the same target; a live
    conversion's directory, another target's and another host's are left alone."""
    import socket

    from dwkit.converters.base import atomic_output_dir

    host = socket.gethostname()
    stale = tmp_path / f".out.partial-{host}-{_dead_pid()}-abcd1234"
    stale_old = tmp_path / f".out.old-{host}-{_dead_pid()}-abcd1234"
    live = tmp_path / f".out.partial-{host}-{os.getppid()}-abcd1234"
    elsewhere = tmp_path / f".out.partial-not-{host}-{_dead_pid()}-abcd1234"
    other_target = tmp_path / f".other.partial-{host}-{_dead_pid()}-abcd1234"
    for folder in (stale, stale_old, live, elsewhere, other_target):
        folder.mkdir()
        (folder / "model.bin").write_bytes(b"half")
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "model.bin").write_bytes(b"whole")
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"whole"
    assert not stale.exists() and not stale_old.exists()
    assert live.exists() and elsewhere.exists() and other_target.exists()


# --- memory follows the audio that decodes, never a header (issue 19, item 1) ------------------


def _peak_rss(model_dir: Path, audio: Path) -> tuple[int, float]:
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(model_dir), str(audio)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    peak, duration, _ = result.stdout.split()
    return int(peak), float(duration)


def test_a_header_claiming_days_costs_only_the_audio_that_decodes(tiny_en_dir, tmp_path):
    """A flac whose STREAMINFO claims 2**36 samples (49 days) and holds 20 s: the mel used to be
    pre-allocated from the claim (128 GiB: a MemoryError traceback)."""
    honest = encode(tmp_path / "honest.flac", 20.0)
    lying = claim_flac_samples(encode(tmp_path / "lying.flac", 20.0), (1 << 36) - 1)
    honest_peak, honest_seconds = _peak_rss(tiny_en_dir, honest)
    lying_peak, lying_seconds = _peak_rss(tiny_en_dir, lying)
    assert honest_seconds == lying_seconds == pytest.approx(20.0, abs=0.05)
    assert lying_peak - honest_peak < 16e6, (honest_peak, lying_peak)


def test_thirty_minutes_cost_their_mel_and_no_more(tiny_en_dir, tmp_path):
    """Peak RSS grows with the 29 extra minutes' log-mel (80 x 174000 frames x 4 B = 56 MB)
    and allocator slack, not with their samples (110 MB of float32, 220 MB as float64)."""
    peaks = {}
    for minutes in (1, 30):
        path = _wav(tmp_path / f"{minutes}min.wav", 0.3 * np.sin(np.arange(16000 * 60 * minutes) * 0.05))
        peaks[minutes], seconds = _peak_rss(tiny_en_dir, path)
        assert seconds == pytest.approx(60 * minutes)
        path.unlink()
    mel_growth = 80 * 100 * 60 * 29 * 4
    assert peaks[30] - peaks[1] < mel_growth + 40e6, peaks


# --- permissions (issue 19, item 4) ------------------------------------------------------------

_AS_NOBODY = """
import os, sys
from pathlib import Path
from dwkit.cli.common import write_atomic
from dwkit.cli.dwconvert import entry as dwconvert
from dwkit.cli.main import entry as transcribe_cli
from dwkit.errors import OutputError
import av, dwkit.audio, dwkit.cli.transcribe, dwkit.converters.ggml  # imported while readable
import gguf, safetensors, torch  # dwconvert --to ggml's libraries, likewise
from dwkit.cli import dwconvert as _convert_cli, main as _main_cli
_main_cli.build_parser(), _convert_cli.build_parser()  # argparse's gettext imports, while readable
model, audio, readonly = sys.argv[1:4]
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)
print(transcribe_cli(["transcribe", audio, "-o", f"{readonly}/t.txt", "--model", model]))
print(transcribe_cli(["transcribe", audio, audio.replace(".wav", "2.wav"), "-o", f"{readonly}/sub", "--model", model]))
print(dwconvert([model, f"{readonly}/out", "--to", "ggml", "--no-validate"]))
try:
    write_atomic(Path(readonly) / "t.txt", "x")
except OutputError as exc:
    print("OutputError:", exc)
"""


def test_unwritable_outputs_are_one_line_not_tracebacks(tiny_en_dir):
    """`-o` into a read-only directory and `dwconvert` into a read-only parent, as `nobody`."""
    folder = Path(tempfile.mkdtemp(prefix="dwkit-ro-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        audio = _wav(folder / "a.wav", np.zeros(1600))
        shutil.copy(audio, folder / "a2.wav")
        readonly = folder / "readonly"
        readonly.mkdir(mode=0o555)
        readonly.chmod(0o555)
        result = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(tiny_en_dir), str(audio), str(readonly)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    finally:
        shutil.rmtree(folder)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines()[:3] == ["1", "1", "1"], (result.stdout, result.stderr)
    assert "OutputError: cannot write" in result.stdout and "permission denied" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3, errors
    assert errors[0].startswith("dwkit: error:") and errors[1].startswith("dwkit: error:")
    assert errors[2].startswith("dwconvert: error:")
    assert all("permission denied" in line and str(readonly) in line for line in errors), errors


# --- unreadable weights in every converter (issue 19, item 5) ----------------------------------


@pytest.fixture
def corrupt_bin_checkpoint(tiny_en_dir: Path, tmp_path: Path) -> Path:
    """tiny.en whose weights are a pytorch_model.bin that is not a pickle at all."""
    broken = tmp_path / "badbin"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip archive" * 100)
    return broken


@pytest.mark.parametrize("fmt, library", [("ggml", "gguf"), ("onnx", "onnx")])
@pytest.mark.parametrize("weights", ["truncated_tiny_en", "corrupt_bin_checkpoint"])
def test_unreadable_weights_are_one_line_in_every_converter(request, tmp_path, capsys, fmt, library, weights):
    from dwkit.cli.dwconvert import entry as dwconvert

    pytest.importorskip(library)
    source = request.getfixturevalue(weights)
    assert dwconvert([str(source), str(tmp_path / "out"), "--to", fmt, "--no-validate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the onnx stage bar's redraws
    assert err.startswith("dwconvert: error:") and "Traceback" not in err, err
    assert str(source) in err and ("unreadable" in err or "could not load" in err), err
    assert not (tmp_path / "out").exists() and not _partials(tmp_path)


# --- hostile side files (issue 19, items 6 and 12) ---------------------------------------------


@pytest.mark.parametrize("name", ["dwkit.json", "config.json"])
def test_deeply_nested_json_is_one_line(tiny_en_dir, tmp_path, speech_short, capsys, name):
    """json.loads recursed until RecursionError (a traceback) on 100000 nested brackets."""
    broken = tmp_path / "deep"
    shutil.copytree(tiny_en_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / name).write_text("[" * 100_000 + "]" * 100_000)
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(broken)]) == 1
    err = _one_error_line(capsys)
    assert name in err and "nested too deeply" in err


@pytest.mark.parametrize("model_file", ["../outside.bin", "/tmp/outside.bin", "sub/../../outside.bin"])
def test_a_ggml_manifest_may_not_name_a_file_outside_its_directory(
    tmp_path, speech_short, capsys, model_file
):
    pytest.importorskip("pywhispercpp")
    model = tmp_path / "ggml-model"
    model.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"lmgg" + b"\0" * 64)  # exists: only the name is refused
    (model / "dwkit.json").write_text(
        json.dumps({"manifest_version": 1, "format": "ggml", "precision": "f16", "model_file": model_file})
    )
    assert dwkit(["transcribe", str(speech_short[0]), "--model", str(model), "--backend", "ggml"]) == 1
    err = _one_error_line(capsys)
    assert "model_file" in err and "inside the model directory" in err, err


# --- output names and standard input (issue 19, items 2 and 10) --------------------------------


def test_two_inputs_with_one_name_under_o_dir_are_refused_before_any_work(tmp_path, capsys):
    """`a/s0.wav b/s0.wav -o DIR` wrote one transcript and exited 0."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _wav(tmp_path / folder / "s0.wav", np.zeros(1600))
    out = tmp_path / "out"
    argv = ["transcribe", str(tmp_path / "a/s0.wav"), str(tmp_path / "b/s0.wav"), "-o", str(out)]
    assert dwkit([*argv, "--model", str(tmp_path / "no-model")]) == 1  # refused before the model
    err = _one_error_line(capsys)
    assert "a/s0.wav" in err and "b/s0.wav" in err and "s0" in err
    assert not out.exists()


def test_dash_reads_audio_from_a_pipe_on_standard_input(tiny_en_dir, speech_short, tmp_path, monkeypatch):
    """`-` was "no such file"; it is standard input, decoded by PyAV as it streams."""
    import threading

    path, _ = speech_short
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(path.read_bytes())

    feeder = threading.Thread(target=feed)
    feeder.start()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(os.fdopen(read_end, "rb")))
    try:
        assert dwkit(["transcribe", "-", "--model", str(tiny_en_dir), "-o", str(tmp_path / "out")]) == 0
    finally:
        feeder.join(timeout=30)
    assert (
        dwkit(["transcribe", str(path), "--model", str(tiny_en_dir), "-o", str(tmp_path / "file.txt")]) == 0
    )
    assert (tmp_path / "out").read_text() == (tmp_path / "file.txt").read_text()
    assert (tmp_path / "out").read_text().strip()


def test_a_truncated_file_is_transcribed_with_one_warning_line(tiny_en_dir, speech_short, tmp_path, capsys):
    import av

    from tests.audio_files import truncate

    flac = tmp_path / "speech.flac"
    with av.open(str(speech_short[0])) as src, av.open(str(flac), "w") as dst:
        stream = dst.add_stream("flac", rate=16000, layout="mono")
        for frame in src.decode(audio=0):
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    cut = truncate(flac, 0.6)
    assert dwkit(["transcribe", str(cut), "--model", str(tiny_en_dir), "-f", "json"]) == 0
    captured = capsys.readouterr()
    warning = captured.err.strip()
    assert warning.startswith("dwkit: warning:") and "\n" not in warning and str(cut) in warning
    decoded = json.loads(captured.out)["duration"]
    assert 0 < decoded < 7.0 and f"{decoded:.2f} s" in warning


def test_a_converted_model_honours_the_umask_whatever_wrote_its_files(tmp_path):
    """safetensors creates its files 0600: a model converted for a team was private to its converter."""
    from safetensors.numpy import save_file

    from dwkit.converters.base import atomic_output_dir

    saved = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "model") as tmp:
            save_file({"w": np.zeros(4, dtype=np.float32)}, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(saved)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "model").iterdir()}
    assert modes == {"model.safetensors": "0o644", "config.json": "0o644"}, modes
    assert oct((tmp_path / "model").stat().st_mode & 0o777) == "0o755"
