"""Sequential long-form transcription: OpenAI's sliding window, as transformers runs it.

The log-mel of each whole recording is computed once (normalised over all of it, as
transformers' long-form generate does); the window engine (dwkit.longform.windows) then
slides the 30 s window over it; the segments become the transcript, their times kept
inside the audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dwkit.constants import FRAMES_PER_SECOND, HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from dwkit.errors import ConfigError
from dwkit.features import RecordingMel, log_mel
from dwkit.longform.options import LongformOptions
from dwkit.longform.segments import clamp_to_duration
from dwkit.longform.windows import ProgressFn, SegmentFn, WindowState, consume_windows
from dwkit.results import Transcript
from dwkit.runtimes.base import Backend
from dwkit.tokenizer import Tokenizer


def transcribe_sequential(
    backend: Backend,
    tokenizer: Tokenizer,
    audios: list[np.ndarray] | list[RecordingMel],
    opts: LongformOptions,
    progress: ProgressFn | None = None,
    on_segment: Sequence[SegmentFn | None] | None = None,
    speech: Sequence[np.ndarray] | None = None,
) -> list[Transcript]:
    """`audios`: samples, or their log-mel already computed (`features.recording_mel` streams it).
    `on_segment[i]` (optional) receives recording i's segments as they are decoded; `speech[i]`
    (with --vad) is the VAD's speech-or-not per mel frame of recording i, the guard's judge."""
    n_mels = backend.info.n_mels
    recordings = [
        a if isinstance(a, RecordingMel) else RecordingMel(log_mel(a, n_mels, pad_to=N_SAMPLES), len(a))
        for a in audios
    ]
    callbacks = list(on_segment) if on_segment is not None else [None] * len(recordings)
    verdicts = list(speech) if speech is not None else [None] * len(recordings)
    states = [
        WindowState(
            mel=r.mel,
            max_frames=r.mel.shape[-1],
            language=opts.language,
            on_segment=fn,
            speech_end=r.n_samples // HOP_LENGTH,
            speech=verdict,
            clips=clip_frames(opts.clip_timestamps, r.n_samples),
        )
        for r, fn, verdict in zip(recordings, callbacks, verdicts)
    ]
    consume_windows(backend, tokenizer, states, opts, timestamps=True, progress=progress)
    if not opts.exact_transformers:  # a segment whose text was all a repeat (guard.drop_repeat)
        for state in states:
            state.segments = [s for s in state.segments if s.text.strip()]
    return [_transcript(tokenizer, s, r.n_samples / SAMPLE_RATE) for s, r in zip(states, recordings)]


def clip_frames(times: tuple[float, ...] | None, n_samples: int) -> list[tuple[int, int]] | None:
    """faster-whisper's clips as mel frames: start,end pairs (an odd count ends at the end of the
    audio); an end past the audio is cut to it, a start at or past its end is refused."""
    if times is None:
        return None
    content = n_samples // HOP_LENGTH
    duration = n_samples / SAMPLE_RATE
    points = [round(t * FRAMES_PER_SECOND) for t in times]
    if len(points) % 2:
        points.append(content)
    clips = []
    for start, end in zip(points[::2], points[1::2]):
        if start >= content:
            raise ConfigError(
                f"clip_timestamps: a clip starts at {start / FRAMES_PER_SECOND:g} s, but the audio ends at "
                f"{duration:.2f} s; give clips inside the audio"
            )
        clips.append((start, min(end, content)))
    return clips


def _transcript(tokenizer: Tokenizer, state: WindowState, duration: float) -> Transcript:
    tokens = [t for seg in state.segments for t in seg.tokens]
    return Transcript(
        text=tokenizer.decode(tokens),
        language=state.language if tokenizer.info.multilingual else "en",
        duration=duration,
        segments=clamp_to_duration(state.segments, duration),
        mode="sequential",
    )
