"""Synthetic speech: 16 kHz mono 16-bit wavs with pauses, cached, and a clear error without espeak-ng."""

from __future__ import annotations

import wave

import pytest

from dwkit import speech
from dwkit.errors import DwkitError
from dwkit.speech import SENTENCES, cached_speech, read_wav, synthesize


def test_short_clip_is_16khz_mono_and_a_few_seconds(speech_short):
    path, text = speech_short
    with wave.open(str(path)) as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) == (16000, 1, 2)
        seconds = handle.getnframes() / 16000
    assert 6 <= seconds <= 10
    assert text.count(".") == 2


def test_long_clip_is_over_two_and_a_half_minutes(speech_long):
    path, text = speech_long
    assert len(read_wav(path)) / 16000 >= 150
    assert len(text.split()) > 350


def test_sentences_are_distinct_and_plain():
    assert len(set(SENTENCES)) == len(SENTENCES) >= 30
    assert not any(ch.isdigit() for sentence in SENTENCES for ch in sentence)


def test_pauses_are_silent(tmp_path):
    if not speech.espeak_available():
        pytest.skip("espeak-ng is not installed")
    one = read_wav(synthesize(SENTENCES[:1], tmp_path / "one.wav"))
    two = read_wav(synthesize(SENTENCES[:1] * 2, tmp_path / "two.wav", pause_s=1.0))
    assert abs(len(two) - (2 * len(one) + 16000)) < 50
    middle = two[len(one) + 1600 : len(one) + 14400]
    assert abs(middle).max() < 1e-3


def test_cached_speech_reuses_the_file(tmp_path):
    if not speech.espeak_available():
        pytest.skip("espeak-ng is not installed")
    first = cached_speech(SENTENCES[:1], tmp_path)
    mtime = first.stat().st_mtime_ns
    assert cached_speech(SENTENCES[:1], tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert cached_speech(SENTENCES[1:2], tmp_path) != first


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DwkitError, match="apt-get install espeak-ng"):
        synthesize(["Hello."], tmp_path / "x.wav")
