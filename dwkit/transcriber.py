"""The public entry point: a loaded backend + tokenizer + options that transcribes audio."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from dwkit.audio import AudioInput, load_audio
from dwkit.constants import SAMPLE_RATE
from dwkit.decoding.assisted import DraftOptions
from dwkit.decoding.speculative import DraftStats, beam_problem
from dwkit.errors import ConfigError
from dwkit.features import recording_mel
from dwkit.longform.chunked import transcribe_chunked
from dwkit.longform.options import LongformOptions
from dwkit.longform.sequential import transcribe_sequential
from dwkit.longform.vad import transcribe_speech
from dwkit.longform.windows import SegmentFn
from dwkit.results import Transcript
from dwkit.runtimes import load as load_backend
from dwkit.runtimes.base import Backend, RuntimeConfig
from dwkit.tokenizer import Tokenizer


class Transcriber:
    """Long-form transcription on one backend. Safe to call from several threads: calls are
    serialised on the backend, which no runtime guarantees to be re-entrant."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, options: LongformOptions | None = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.options = options or LongformOptions()
        self._lock = threading.Lock()

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike[str],
        backend: str | None = None,
        runtime: RuntimeConfig | None = None,
        options: LongformOptions | None = None,
        draft: DraftOptions | None = None,
    ) -> Transcriber:
        """`draft`: a draft model for speculative decoding of greedy windows (its `model` is a
        directory here; `dwkit.load` resolves hub ids). The transcript stays the main model's."""
        options = options or LongformOptions()
        problem = beam_problem(options.decode.beam_size) if draft is not None and draft.model else None
        if problem:
            raise ConfigError(problem)
        loaded = load_backend(model_dir, backend, runtime)
        if draft is not None and draft.model:
            from dwkit.decoding.assisted import with_draft

            try:
                loaded = with_draft(
                    loaded, Path(model_dir), Path(draft.model), draft, runtime or RuntimeConfig()
                )
            except BaseException:
                loaded.close()
                raise
        return cls(loaded, Tokenizer.from_model_dir(Path(model_dir), loaded.info), options)

    @property
    def draft_stats(self) -> DraftStats | None:
        """The draft's acceptance so far (None without a draft model)."""
        return getattr(self.backend, "stats", None)

    def transcribe(self, audio: AudioInput, progress: bool = False) -> Transcript:
        return self.transcribe_batch([audio], progress=progress)[0]

    def transcribe_batch(
        self,
        audios: Sequence[AudioInput],
        progress: bool = False,
        options: LongformOptions | None = None,
        on_segment: Sequence[SegmentFn | None] | None = None,
    ) -> list[Transcript]:
        """`options` replaces the Transcriber's own for this call (a server's per-request
        language or temperature); `on_segment[i]` receives audio i's segments as they are
        decoded (sequential mode only: chunked segments exist only once the chunks are merged)."""
        options = options or self.options
        # Audio and features are prepared outside the lock, so other threads' decoding overlaps.
        if options.mode == "chunked" and on_segment is not None:
            raise ConfigError("segments can be streamed in sequential mode only (mode = sequential)")
        if options.mode == "chunked" or options.vad:  # VAD reads the samples (dwkit.longform.vad)
            samples = [load_audio(a) for a in audios]
            inputs, total = samples, sum(len(s) for s in samples) / SAMPLE_RATE
            engine = (
                functools.partial(transcribe_speech, on_segment=on_segment)
                if options.vad
                else transcribe_chunked
            )
        else:  # the log-mel of each recording, streamed: its decoded audio is never held whole
            mels = [recording_mel(a, self.backend.info.n_mels) for a in audios]
            inputs, total = mels, sum(m.n_samples for m in mels) / SAMPLE_RATE
            engine = functools.partial(transcribe_sequential, on_segment=on_segment)
        with self._lock, _progress_bar(total, progress) as bar:
            transcripts = engine(self.backend, self.tokenizer, inputs, options, bar.update if bar else None)
        for transcript, audio in zip(transcripts, audios):
            transcript.backend = self.backend.name
            transcript.source = str(audio) if isinstance(audio, (str, os.PathLike)) else None
        return transcripts


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(total_seconds: float, enabled: bool):  # type: ignore[no-untyped-def]
    """A tqdm bar in audio seconds on stderr (long work must show progress)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=round(total_seconds, 1),
        unit="s",
        unit_scale=True,
        desc="transcribing",
        file=sys.stderr,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )
