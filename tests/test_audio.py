"""Audio loading through PyAV: formats, resampling, channels, and clear errors."""

import io
import logging
import os
import subprocess
import wave

import numpy as np
import pytest

from dwkit.audio import check_audio, load_audio
from dwkit.errors import AudioError
from tests.audio_files import FORMATS, encode, truncate


def _wav(path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def test_resamples_to_16k_and_keeps_pitch(tmp_path):
    _wav(tmp_path / "a.wav", _tone(22050, 2.0), 22050)
    audio = load_audio(tmp_path / "a.wav")
    assert audio.dtype == np.float32
    assert abs(len(audio) - 32000) < 200
    spectrum = np.abs(np.fft.rfft(audio[2000:18000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 2


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = _tone(16000, 1.0), np.zeros(16000)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    _wav(tmp_path / "s.wav", interleaved, 16000, channels=2)
    audio = load_audio(tmp_path / "s.wav")
    assert len(audio) == 16000
    # FFmpeg's downmix (as `ffmpeg -ac 1`, which transformers uses) keeps power: 0.5 / sqrt(2)
    assert np.abs(audio).max() == pytest.approx(0.5 / np.sqrt(2), abs=0.02)


def test_bytes_and_file_objects_and_arrays(tmp_path):
    _wav(tmp_path / "a.wav", _tone(16000, 1.0), 16000)
    data = (tmp_path / "a.wav").read_bytes()
    from_path = load_audio(tmp_path / "a.wav")
    assert np.array_equal(load_audio(data), from_path)
    assert np.array_equal(load_audio(io.BytesIO(data)), from_path)
    ints = (from_path * 32767).astype(np.int16)
    assert np.abs(load_audio(ints) - from_path).max() < 1e-3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.wav", "no such file"),
        (lambda p: _file(p / "empty.wav", b""), "empty"),
        (lambda p: _file(p / "notes.txt", b"not audio at all\n" * 20), "not an audio file"),
        (lambda p: p, "directory"),
    ],
)
def test_bad_inputs_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(AudioError, match=message):
        load_audio(make(tmp_path))


def test_zero_samples_is_an_error(tmp_path):
    _wav(tmp_path / "z.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no audio samples|empty"):
        load_audio(tmp_path / "z.wav")


# --- damaged files: one policy in every format (issue 19, item 13) -----------------------------


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_a_complete_file_decodes_without_a_warning(tmp_path, suffix, caplog):
    path = encode(tmp_path / f"tone.{suffix}", 6.0)
    with caplog.at_level(logging.WARNING, logger="dwkit"):
        audio = load_audio(path)
    assert len(audio) / 16000 == pytest.approx(6.0, abs=0.1)
    assert not caplog.records, caplog.text


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_a_truncated_file_gives_what_decodes_and_one_warning(tmp_path, suffix, caplog):
    """mp3 used to pass silently as if complete, flac to be refused although half decodes."""
    cut = truncate(encode(tmp_path / f"tone.{suffix}", 10.0), 0.5)
    with caplog.at_level(logging.WARNING, logger="dwkit"):
        audio = load_audio(cut)
    seconds = len(audio) / 16000
    assert 3.0 < seconds < 5.5  # the first half, less at most a damaged frame or page
    # the decoded part is the file's own audio, sample for sample
    whole = load_audio(tmp_path / f"tone.{suffix}")
    assert np.abs(audio[: 16000 * 3] - whole[: 16000 * 3]).max() < 1e-6
    [record] = caplog.records
    message = record.getMessage()
    assert str(cut) in message and f"{seconds:.2f} s" in message and "\n" not in message


def test_a_file_of_which_nothing_decodes_is_still_an_error(tmp_path):
    header_only = tmp_path / "head.flac"
    header_only.write_bytes(encode(tmp_path / "tone.flac", 5.0).read_bytes()[:100])
    with pytest.raises(AudioError, match="head.flac"):
        load_audio(header_only)


# --- pipes (issue 19, item 10) -----------------------------------------------------------------


def test_a_pipe_is_read_once_and_not_reported_empty(tmp_path):
    path = encode(tmp_path / "tone.flac", 3.0)
    expected = load_audio(path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{path}' > '{fifo}'"])
    try:
        check_audio(fifo)  # must not consume the pipe
        audio = load_audio(fifo)
    finally:
        writer.wait(timeout=30)
    assert np.array_equal(audio, expected)
