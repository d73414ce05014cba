"""Sequential long-form transcription: OpenAI's sliding window, as transformers runs it.

The log-mel of each whole recording is computed once (normalised over all of it, as
transformers' long-form generate does); the window engine (dwkit.longform.windows) then
slides the 30 s window over it; the segments become the transcript, their times kept
inside the audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dwkit.constants import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
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
        )
        for r, fn, verdict in zip(recordings, callbacks, verdicts)
    ]
    consume_windows(backend, tokenizer, states, opts, timestamps=True, progress=progress)
    if not opts.exact_transformers:  # a segment whose text was all a repeat (guard.drop_repeat)
        for state in states:
            state.segments = [s for s in state.segments if s.text.strip()]
    return [_transcript(tokenizer, s, r.n_samples / SAMPLE_RATE) for s, r in zip(states, recordings)]


def _transcript(tokenizer: Tokenizer, state: WindowState, duration: float) -> Transcript:
    tokens = [t for seg in state.segments for t in seg.tokens]
    return Transcript(
        text=tokenizer.decode(tokens),
        language=state.language if tokenizer.info.multilingual else "en",
        duration=duration,
        segments=clamp_to_duration(state.segments, duration),
        mode="sequential",
    )
