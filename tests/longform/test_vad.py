"""Silero VAD: the regions equal Silero's own, silence gets no text, times land on the recording."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from dwkit import vad
from dwkit.audio import load_audio
from dwkit.cli.main import entry as dwkit
from dwkit.config import Config
from dwkit.constants import SAMPLE_RATE
from dwkit.errors import BackendUnavailable, ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.longform.vad import _moved
from dwkit.metrics import wer
from dwkit.results import Segment
from dwkit.transcriber import Transcriber

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("silero_vad") is None,
    reason="silero-vad is not installed: pip install 'dwkit[vad]'",
)
SR = SAMPLE_RATE


def _regions(regions: list[vad.Region]) -> list[tuple[int, int]]:
    return [(r.start, r.end) for r in regions]


def test_regions_equal_silero_vads_own(speech_early_end):
    """Same model, same state machine: Silero's torch reference finds the same sample offsets."""
    silero = pytest.importorskip("silero_vad")
    torch = pytest.importorskip("torch")
    samples, _ = speech_early_end
    opts = vad.VadOptions(max_speech_duration_s=float("inf"), min_silence_duration_ms=500, speech_pad_ms=100)
    ours = vad.detect_speech(samples, opts)
    theirs = silero.get_speech_timestamps(
        torch.from_numpy(samples),
        silero.load_silero_vad(onnx=True),
        threshold=opts.threshold,
        min_speech_duration_ms=opts.min_speech_duration_ms,
        min_silence_duration_ms=opts.min_silence_duration_ms,
        speech_pad_ms=opts.speech_pad_ms,
    )
    assert len(ours) >= 2  # the sentence, the pause, the quiet speech
    assert _regions(ours) == [(t["start"], t["end"]) for t in theirs]


def test_long_regions_are_cut_at_their_last_silence_and_short_ones_dropped():
    frames = np.array([0.9] * 40 + [0.1] * 5 + [0.9] * 40 + [0.0] * 100 + [0.9] * 3 + [0.0] * 100)
    opts = vad.VadOptions(
        max_speech_duration_s=60 * vad.FRAME / SR, min_silence_duration_ms=1000, speech_pad_ms=0
    )
    regions = vad.speech_regions(frames, len(frames) * vad.FRAME, opts)
    assert _regions(regions) == [
        (0, 40 * vad.FRAME),
        (45 * vad.FRAME, 85 * vad.FRAME),
        (185 * vad.FRAME, 188 * vad.FRAME),
    ]
    opts = dataclasses.replace(opts, min_speech_duration_ms=200)  # 3 frames = 96 ms of speech: gone
    assert len(vad.speech_regions(frames, len(frames) * vad.FRAME, opts)) == 2


def test_regions_group_into_pieces_of_at_most_the_limit():
    regions = [
        vad.Region(0, 10 * SR),
        vad.Region(20 * SR, 35 * SR),
        vad.Region(40 * SR, 46 * SR),
        vad.Region(50 * SR, 90 * SR),
    ]
    pieces = vad.collect(regions, 30.0)
    assert [[(r.start // SR, r.end // SR) for r in piece] for piece in pieces] == [
        [(0, 10), (20, 35)],
        [(40, 46)],
        [(50, 90)],  # longer than the limit alone: a piece of its own
    ]


def test_piece_times_map_back_and_snap_to_the_joins():
    clock = vad.PieceClock([vad.Region(10 * SR, 12 * SR), vad.Region(20 * SR, 25 * SR)])
    assert clock.original(1.0) == 11.0
    assert clock.original(3.0) == 21.0
    assert clock.original(2.3, is_end=True) == 12.0  # an end near the join closes the first region
    assert clock.original(2.3) == 20.0  # a start near it opens the second
    assert clock.original(7.5, is_end=True) == 25.5  # past the last region: moved by its silence


@dataclasses.dataclass
class _Word:
    word: str
    start: float
    end: float


@dataclasses.dataclass
class _WordSegment(Segment):
    words: list = dataclasses.field(default_factory=list)  # type: ignore[type-arg]


def test_segment_and_word_times_move_together():
    clock = vad.PieceClock([vad.Region(30 * SR, 40 * SR)])
    segment = _WordSegment(
        1.0, 3.0, " a b", words=[_Word(" a", 1.0, 1.5), {"word": " b", "start": 2.0, "end": 3.0}]
    )
    moved = _moved(segment, clock, duration=60.0)
    assert (moved.start, moved.end) == (31.0, 33.0)
    assert moved.words == [_Word(" a", 31.0, 31.5), {"word": " b", "start": 32.0, "end": 33.0}]
    assert _moved(segment, clock, duration=32.5).end == 32.5  # never past the recording


def test_vad_runs_without_importing_torch():
    code = (
        "import sys, numpy as np; from dwkit import vad; "
        "assert vad.detect_speech(np.zeros(16000, np.float32), vad.VadOptions()) == []; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_silero_vad_names_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable, match=r"dwkit\[vad\]"):
        vad.model_path()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"vad_threshold": 1.5}, "must be <= 1"),
        ({"vad_min_silence_duration_ms": -1}, "must be >= 0"),
        ({"vad_max_speech_duration_s": 0}, "must be > 0"),
        ({"vad": True, "vad_speech_pad_ms": 600, "vad_max_speech_duration_s": 1.0}, "vad_speech_pad_ms"),
    ],
)
def test_vad_options_are_validated(options, message):
    with pytest.raises(ConfigError, match=message):
        LongformOptions(**options)


def test_vad_is_a_config_key_and_an_environment_variable(tmp_path):
    path = tmp_path / "dwkit.toml"
    path.write_text("[longform]\nvad = true\nvad_min_silence_duration_ms = 500\n")
    config = Config.from_file(path, env={"DWKIT_LONGFORM__VAD_SPEECH_PAD_MS": "100"})
    assert config.longform.vad and config.longform.vad_min_silence_duration_ms == 500
    assert config.longform.vad_speech_pad_ms == 100 and config.longform.vad_threshold == 0.5
    with pytest.raises(ConfigError, match=r"longform\.vad_threshold = -0\.1: must be >= 0"):
        Config.from_file(path, env={"DWKIT_LONGFORM__VAD_THRESHOLD": "-0.1"})


def test_a_bad_vad_flag_is_one_line(tiny_en_dir, speech_short, capsys):
    argv = ["transcribe", str(speech_short[0]), "--model", str(tiny_en_dir), "--vad", "--vad-threshold", "2"]
    assert dwkit(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "longform.vad_threshold = 2.0: must be <= 1" in err, err


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_silence_only_is_an_empty_transcript(tiny_en_dir, mode):
    silence = np.zeros(20 * SR, dtype=np.float32)
    transcript = _transcribe(tiny_en_dir, silence, mode=mode, vad=True)
    assert transcript.text == "" and transcript.segments == [] and transcript.duration == 20.0


def test_speech_after_silence_keeps_its_place_on_the_timeline(tiny_en_dir, speech_short):
    speech = load_audio(speech_short[0])
    offset = 20.0
    samples = np.concatenate([np.zeros(int(offset * SR)), speech, np.zeros(5 * SR)]).astype(np.float32)
    alone = _transcribe(tiny_en_dir, speech, vad=False)
    placed = _transcribe(tiny_en_dir, samples, vad=True)
    assert wer(speech_short[1], placed.text) < 0.1
    assert placed.duration == pytest.approx(len(samples) / SR)
    assert len(placed.segments) == len(alone.segments)
    for ours, reference in zip(placed.segments, alone.segments):  # the same times, moved by the offset
        assert ours.start == pytest.approx(offset + reference.start, abs=0.5)
        assert ours.end == pytest.approx(offset + reference.end, abs=0.5)
    pad = LongformOptions().vad_speech_pad_ms / 1000
    assert placed.segments[0].start >= offset - pad - 1e-6


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_no_text_in_long_silences(tiny_en_dir, speech_silent_gaps, mode):
    samples, sentences = speech_silent_gaps
    regions = vad.detect_speech(samples, vad.VadOptions())
    transcript = _transcribe(tiny_en_dir, samples, mode=mode, vad=True)
    assert wer(" ".join(sentences), transcript.text) < 0.1
    assert len(regions) == len(sentences)
    for segment in transcript.segments:  # each segment lies in the speech (and the silence between)
        assert any(r.start / SR - 0.5 <= segment.start < r.end / SR for r in regions), segment
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)


def _transcribe(model_dir, samples, **options):  # type: ignore[no-untyped-def]
    opts = LongformOptions(**options)
    return Transcriber.from_model_dir(model_dir, "hf", options=opts).transcribe(samples)
