"""Voice activity detection: Silero VAD's own ONNX model, run through onnxruntime.

The `silero-vad` package ships the model files, but its Python functions cannot be used here:
importing the package (or any module in it) imports torch first (`silero_vad/__init__.py` loads
`model.py` and `utils_vad.py`, whose first line is `import torch`), and dwkit runs on the ct2,
onnx and ggml backends without torch. So the packaged file is located through importlib's
finder, which reads the package's location without executing it, and run here: the package's
"sequence" export (`silero_vad_16k_sequence.onnx`, the streaming model unrolled over a block of
frames, bit-exact with it) takes up to 512 frames of 512 samples per call instead of one, so a
recording costs a handful of calls. The probabilities become speech regions by the state machine
of Silero's `get_speech_timestamps` as faster-whisper ports it (`faster_whisper.vad`, whose
option names `VadOptions` keeps); it is written out below because both copies live in packages
dwkit cannot import for it (silero_vad: torch; faster_whisper: CTranslate2 and its own model).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dwkit.constants import SAMPLE_RATE
from dwkit.errors import BackendUnavailable

FRAME = 512  # samples per probability at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame
BLOCK = 512  # frames per onnxruntime call (16.4 s of audio)
MODEL_FILE = "silero_vad_16k_sequence.onnx"
SHORT_SILENCE_S = 0.098  # a silence this long is a place to cut a region at max duration
JOIN_SNAP_S = 0.5  # Whisper's timestamps next to a join of two regions are this rough


@dataclass
class VadOptions:
    """faster-whisper's VadOptions (same names and meanings); dwkit's defaults come from
    LongformOptions' `vad_*` fields."""

    threshold: float = 0.5  # frames with a speech probability at or above this are speech
    min_speech_duration_ms: int = 0  # shorter regions are dropped
    max_speech_duration_s: float = 30.0  # longer regions are cut (at their last silence if any)
    min_silence_duration_ms: int = 2000  # silence must last this long to end a region
    speech_pad_ms: int = 400  # each region grows by this much on each side
    neg_threshold: float | None = None  # below this a frame is silence (default: threshold - 0.15)


@dataclass
class Region:
    start: int  # sample offsets in the recording
    end: int


def model_path() -> Path:
    """The packaged ONNX file, found without importing `silero_vad` (that imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("voice activity detection needs silero-vad: pip install 'dwkit[vad]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    if not path.is_file():
        raise BackendUnavailable(f"silero-vad has no {MODEL_FILE}: pip install 'silero-vad>=6.2,<7'")
    return path


@lru_cache(maxsize=1)
def _session():  # type: ignore[no-untyped-def]
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(
            "voice activity detection needs onnxruntime: pip install 'dwkit[vad]'"
        ) from exc
    options = ort.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1  # a small LSTM: threads only cost
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """One speech probability per FRAME samples of 16 kHz audio (the last frame zero-padded)."""
    n_frames = -(-len(samples) // FRAME)
    frames = np.zeros((n_frames, FRAME), dtype=np.float32)
    frames.reshape(-1)[: len(samples)] = samples
    context = np.zeros((n_frames, CONTEXT), dtype=np.float32)
    context[1:] = frames[:-1, -CONTEXT:]
    inputs = np.concatenate([context, frames], axis=1)
    hidden = np.zeros((1, 1, 128), dtype=np.float32)
    cell = np.zeros((1, 1, 128), dtype=np.float32)
    probs = []
    for first in range(0, n_frames, BLOCK):
        values, hidden, cell = _session().run(
            ["speech_probs", "hn", "cn"], {"input": inputs[first : first + BLOCK], "h": hidden, "c": cell}
        )
        probs.append(np.asarray(values).reshape(-1))
    return np.concatenate(probs) if probs else np.zeros(0, dtype=np.float32)


def speech_regions(probs: np.ndarray, n_samples: int, opts: VadOptions) -> list[Region]:
    """Silero's get_speech_timestamps state machine (faster-whisper's port) on `probs`."""
    ms = SAMPLE_RATE / 1000
    min_speech, pad = opts.min_speech_duration_ms * ms, opts.speech_pad_ms * ms
    max_speech = SAMPLE_RATE * opts.max_speech_duration_s - FRAME - 2 * pad
    min_silence, short_silence = opts.min_silence_duration_ms * ms, SHORT_SILENCE_S * SAMPLE_RATE
    low = opts.neg_threshold if opts.neg_threshold is not None else max(opts.threshold - 0.15, 0.01)
    regions: list[Region] = []
    start: int | None = None  # the open region's start
    temp_end = prev_end = next_start = 0  # a silence began / the last cut point / speech after it
    for i, prob in enumerate(probs):
        sample = FRAME * i
        if prob >= opts.threshold and temp_end:
            temp_end = 0
            next_start = sample if next_start < prev_end else next_start
        if prob >= opts.threshold and start is None:
            start = sample
            continue
        if start is not None and sample - start > max_speech:
            if prev_end:  # cut at the last silence, reopen after it if speech came back
                regions.append(Region(start, prev_end))
                start = None if next_start < prev_end else next_start
            else:  # no silence to cut at: cut here
                regions.append(Region(start, sample))
                start = None
            prev_end = next_start = temp_end = 0
            if start is None:
                continue
        if prob < low and start is not None:
            temp_end = temp_end or sample
            if sample - temp_end > short_silence:
                prev_end = temp_end
            if sample - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                regions.append(Region(start, temp_end))
            start, prev_end, next_start, temp_end = None, 0, 0, 0
    if start is not None and n_samples - start > min_speech:
        regions.append(Region(start, n_samples))
    return _padded(regions, n_samples, pad)


def _padded(regions: list[Region], n_samples: int, pad: float) -> list[Region]:
    """Each region widened by `pad`; two closer than 2 * pad meet in the middle of their gap."""
    for i, region in enumerate(regions):
        if i == 0:
            region.start = int(max(0, region.start - pad))
        if i + 1 < len(regions):
            after = regions[i + 1]
            gap = after.start - region.end
            if gap < 2 * pad:
                region.end += gap // 2
                after.start = int(max(0, after.start - gap // 2))
            else:
                region.end = int(min(n_samples, region.end + pad))
                after.start = int(max(0, after.start - pad))
        else:
            region.end = int(min(n_samples, region.end + pad))
    return regions


def detect_speech(samples: np.ndarray, opts: VadOptions) -> list[Region]:
    """The speech regions of a 16 kHz recording (empty for silence)."""
    if not len(samples):
        return []
    return speech_regions(speech_probabilities(samples), len(samples), opts)


def collect(regions: list[Region], max_duration_s: float) -> list[list[Region]]:
    """Regions grouped, in order, into pieces of at most `max_duration_s` of speech each
    (faster-whisper's collect_chunks: a region that alone is longer is a piece of its own)."""
    pieces: list[list[Region]] = []
    length = 0
    for region in regions:
        size = region.end - region.start
        if pieces and length + size <= max_duration_s * SAMPLE_RATE:
            pieces[-1].append(region)
            length += size
        else:
            pieces.append([region])
            length = size
    return pieces


@dataclass
class PieceClock:
    """Maps a time in a piece (its regions' audio joined) back to the recording's timeline."""

    regions: list[Region]
    snap: int = int(JOIN_SNAP_S * SAMPLE_RATE)

    def original(self, time: float, is_end: bool = False) -> float:
        """A time inside region k moves by the silence before region k. Near a join (within
        `snap` samples) the time is taken to be at the join, on the side its role asks for: an
        end closes the earlier region, a start opens the later one; the joined audio has no
        silence there, so the model's timestamp around a join is only roughly placed."""
        sample = time * SAMPLE_RATE
        joined = 0
        for k, region in enumerate(self.regions):
            size = region.end - region.start
            if k + 1 < len(self.regions) and abs(sample - joined - size) <= self.snap:
                return round((region.end if is_end else self.regions[k + 1].start) / SAMPLE_RATE, 3)
            if sample < joined + size or k + 1 == len(self.regions):
                return round((region.start + sample - joined) / SAMPLE_RATE, 3)
            joined += size
        return time  # no regions: nothing to map

    @property
    def n_samples(self) -> int:
        return sum(r.end - r.start for r in self.regions)

    def audio(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([samples[r.start : r.end] for r in self.regions]).astype(np.float32)
