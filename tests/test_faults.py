"""The fault suite: generated bad input, one invariant.

Whatever a careless or hostile user passes (audio bytes, audio headers, the side files of a
model directory), `dwkit` either exits 0 with a correct result or exits 1 with one error
line; it never prints a traceback, never leaves a half-written or stray file, and never
touches a file other than the output it was told to write.

Hypothesis generates the inputs. The default part is small and derandomised (the same few
dozen examples every run, so a failure reproduces); the `slow` part draws many more at random.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwkit.audio import load_audio
from dwkit.cli.main import entry as dwkit
from dwkit.errors import AudioError
from dwkit.features import recording_mel
from tests.audio_files import FORMATS, encode

FAST = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=150, derandomize=False)


# --- the invariant ----------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mode, p.read_bytes()[:4096])
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def run_and_check(argv: list[str], workdir: Path, output: Path) -> tuple[int, str]:
    """Run `dwkit argv` in-process and assert the invariant; returns (exit code, stdout).

    An exception escaping the CLI is exactly what a user would see as a traceback, so it is
    left to fail the test with its own traceback.
    """
    before = _snapshot(workdir)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = dwkit(argv)
    err = stderr.getvalue()
    lines = err.strip().splitlines()
    assert code in (0, 1), (code, err)
    assert "Traceback" not in err, err
    assert all(line.startswith("dwkit: ") for line in lines), err  # dwkit's own lines only
    errors = [line for line in lines if line.startswith("dwkit: error:")]
    named = str(output.relative_to(workdir))
    after = _snapshot(workdir)
    touched = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    if code == 1:
        assert len(errors) == 1 and lines[-1] == errors[0], err
        assert not touched, f"a failed run changed {sorted(touched)}"
    else:
        assert not errors, err
        assert touched <= {named}, f"wrote {sorted(touched - {named})} besides {named}"
    return code, stdout.getvalue()


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is per test, hypothesis runs many)."""
    folder = Path(tempfile.mkdtemp(prefix="dwkit-fault-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- audio: bytes, headers, damage ------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Half a second of tone in each container/codec, as bytes to damage."""
    folder = tmp_path_factory.mktemp("clean-audio")
    return {suffix: encode(folder / f"tone.{suffix}", 0.5).read_bytes() for suffix in FORMATS}


@st.composite
def damaged(draw: st.DrawFn, clean: dict[str, bytes]) -> tuple[str, bytes]:
    """A real file cut short, with bytes overwritten (headers most of all), or pure noise."""
    suffix = draw(st.sampled_from(sorted(clean)))
    kind = draw(st.sampled_from(["noise", "cut", "header", "patch"]))
    data = bytearray(clean[suffix])
    if kind == "noise":
        return suffix, draw(st.binary(min_size=1, max_size=4096))
    if kind == "cut":
        return suffix, bytes(data[: draw(st.integers(1, len(data) - 1))])
    region = 64 if kind == "header" else len(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, min(region, len(data)) - 1))
        data[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
    return suffix, bytes(data)


def _audio_case(clean_audio: dict[str, bytes], case: tuple[str, bytes]) -> None:
    """The library layer: AudioError, or float samples whose mel is finite and sized by them."""
    suffix, data = case
    with _workdir() as folder:
        path = folder / f"input.{suffix}"
        path.write_bytes(data)
        try:
            samples = load_audio(path)
        except AudioError as exc:
            assert "\n" not in str(exc).strip() and str(path) in str(exc)
            return
        assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples)
        # a header may claim anything: the mel follows the samples that decoded
        mel = recording_mel(path, 80)
        assert mel.n_samples == len(samples)
        assert mel.mel.shape[1] == max(len(samples), 480000) // 160
        assert np.isfinite(mel.mel).all()


def test_damaged_audio_is_an_audio_error_or_decodes(clean_audio):
    @FAST
    @given(damaged(clean_audio))
    def check(case: tuple[str, bytes]) -> None:
        _audio_case(clean_audio, case)

    check()


@pytest.mark.slow
def test_damaged_audio_is_an_audio_error_or_decodes_many(clean_audio):
    @SLOW
    @given(damaged(clean_audio))
    def check(case: tuple[str, bytes]) -> None:
        _audio_case(clean_audio, case)

    check()


def _cli_audio_case(model: Path, case: tuple[str, bytes]) -> None:
    suffix, data = case
    with _workdir() as folder:
        path = folder / f"input.{suffix}"
        path.write_bytes(data)
        output = folder / "out.json"
        argv = ["transcribe", str(path), "--model", str(model), "-f", "json", "-o", str(output)]
        code, _ = run_and_check(argv, folder, output)
        if code == 0:  # a correct result: the transcript covers exactly the audio that decodes
            result = json.loads(output.read_text())
            assert result["duration"] == pytest.approx(len(load_audio(path)) / 16000, abs=1e-6)
            assert isinstance(result["text"], str)


def test_damaged_audio_through_the_cli(clean_audio, tiny_en_dir):
    @settings(FAST, max_examples=6)
    @given(damaged(clean_audio))
    def check(case: tuple[str, bytes]) -> None:
        _cli_audio_case(tiny_en_dir, case)

    check()


@pytest.mark.slow
def test_damaged_audio_through_the_cli_many(clean_audio, tiny_en_dir):
    @settings(SLOW, max_examples=40)
    @given(damaged(clean_audio))
    def check(case: tuple[str, bytes]) -> None:
        _cli_audio_case(tiny_en_dir, case)

    check()


# --- model side files -------------------------------------------------------------------------

SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "dwkit.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def side_file_fault(draw: st.DrawFn, originals: dict[str, str]) -> tuple[str, bytes]:
    """One side file replaced: a key given a random value or removed, the file cut short,
    deeply nested, not JSON at all, or a JSON value of the wrong kind."""
    name = draw(st.sampled_from(SIDE_FILES))
    text = originals[name]
    kind = draw(st.sampled_from(["value", "drop", "cut", "nested", "bytes", "kind"]))
    if kind == "cut":
        return name, text.encode()[: draw(st.integers(0, len(text.encode()) - 1))]
    if kind == "nested":
        depth = draw(st.integers(1_000, 200_000))
        return name, ("[" * depth + "]" * depth).encode()
    if kind == "bytes":
        return name, draw(st.binary(max_size=256))
    if kind == "kind":
        return name, json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    data = json.loads(text)
    key = draw(st.sampled_from(sorted(data)))
    if kind == "drop":
        del data[key]
    else:
        data[key] = draw(json_values)
    return name, json.dumps(data).encode()


def _side_file_case(model: Path, audio: Path, fault: tuple[str, bytes]) -> None:
    name, content = fault
    with _workdir() as folder:
        broken = folder / "model"
        broken.mkdir()
        for item in model.iterdir():  # the weights are linked: only the side files vary
            if item.suffix in (".json", ".txt"):
                shutil.copy(item, broken / item.name)
            else:
                os.symlink(item, broken / item.name)
        (broken / name).write_bytes(content)
        output = folder / "out.json"
        argv = ["transcribe", str(audio), "--model", str(broken), "-f", "json", "-o", str(output)]
        argv += ["--temperature", "0"]  # one decoding pass: the files are under test, not fallback
        code, _ = run_and_check(argv, folder, output)
        if code == 0:
            result = json.loads(output.read_text())
            assert result["duration"] == pytest.approx(len(load_audio(audio)) / 16000, abs=1e-6)


@pytest.fixture(scope="module")
def short_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second of near-silence: the model finds no speech in it quickly, whatever it is."""
    path = tmp_path_factory.mktemp("audio") / "quiet.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(16000, dtype="<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def own_tiny_en(tiny_en_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy, linked from by every example (the shared cache may be rebuilt meanwhile)."""
    return Path(shutil.copytree(tiny_en_dir, tmp_path_factory.mktemp("faults") / "tiny.en"))


@pytest.fixture(scope="module")
def side_files(own_tiny_en: Path) -> dict[str, str]:
    return {name: (own_tiny_en / name).read_text(encoding="utf-8") for name in SIDE_FILES}


def test_broken_model_side_files(own_tiny_en, side_files, short_audio):
    @settings(FAST, max_examples=12)
    @given(side_file_fault(side_files))
    def check(fault: tuple[str, bytes]) -> None:
        _side_file_case(own_tiny_en, short_audio, fault)

    check()


@pytest.mark.slow
def test_broken_model_side_files_many(own_tiny_en, side_files, short_audio):
    @settings(SLOW, max_examples=200)
    @given(side_file_fault(side_files))
    def check(fault: tuple[str, bytes]) -> None:
        _side_file_case(own_tiny_en, short_audio, fault)

    check()
