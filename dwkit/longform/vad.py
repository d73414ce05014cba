"""Long-form transcription of the speech alone: Silero VAD's regions transcribed, times mapped back.

faster-whisper's recipe: the speech regions (dwkit.vad) are joined, in order, into pieces of at
most one window (sequential) or one chunk (chunked), and each piece (its regions' audio end to
end) is transcribed as a recording of its own by the mode's engine, all pieces of all
recordings batched together. Silence is never decoded, so it can get no text, and it costs
nothing but the VAD. Every time in a piece's transcript (segments, and their words when
segments carry them) is then moved back onto the recording's timeline (dwkit.vad.PieceClock).
The VAD's frame verdicts also go to the lost-speech guard (dwkit.longform.guard), which then
decodes on after an early end only where the VAD hears speech.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from dwkit.constants import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from dwkit.longform.chunked import transcribe_chunked
from dwkit.longform.options import LongformOptions
from dwkit.longform.sequential import transcribe_sequential
from dwkit.longform.windows import ProgressFn, SegmentFn
from dwkit.results import Segment, Transcript
from dwkit.runtimes.base import Backend
from dwkit.tokenizer import Tokenizer
from dwkit.vad import FRAME, PieceClock, VadOptions, collect, speech_probabilities, speech_regions


def vad_options(opts: LongformOptions) -> VadOptions:
    return VadOptions(
        threshold=opts.vad_threshold,
        min_speech_duration_ms=opts.vad_min_speech_duration_ms,
        max_speech_duration_s=opts.vad_max_speech_duration_s,
        min_silence_duration_ms=opts.vad_min_silence_duration_ms,
        speech_pad_ms=opts.vad_speech_pad_ms,
    )


def transcribe_speech(
    backend: Backend,
    tokenizer: Tokenizer,
    audios: list[np.ndarray],
    opts: LongformOptions,
    progress: ProgressFn | None = None,
    on_segment: Sequence[SegmentFn | None] | None = None,
) -> list[Transcript]:
    """Each recording's transcript from its speech regions only (empty for silence).
    `on_segment[i]` (sequential mode) receives recording i's segments on its own timeline."""
    piece_s = opts.chunk_length_s if opts.mode == "chunked" else N_SAMPLES / SAMPLE_RATE
    owners: list[tuple[int, PieceClock]] = []
    verdicts: list[np.ndarray] = []  # per piece: speech or not per mel frame, the guard's judge
    for i, samples in enumerate(audios):
        probs = speech_probabilities(samples)
        regions = speech_regions(probs, len(samples), vad_options(opts))
        pieces = [PieceClock(group) for group in collect(regions, piece_s)]
        owners += [(i, clock) for clock in pieces]
        speech = np.repeat(probs >= opts.vad_threshold, FRAME)
        verdicts += [clock.audio(speech)[::HOP_LENGTH] for clock in pieces]
        if progress:  # the silence is done as soon as it is found
            progress((len(samples) - sum(c.n_samples for c in pieces)) / SAMPLE_RATE)
    parts = _transcribe_pieces(backend, tokenizer, audios, owners, verdicts, opts, progress, on_segment)
    results = []
    for i, samples in enumerate(audios):
        mine = [(clock, part) for (owner, clock), part in zip(owners, parts) if owner == i]
        results.append(_joined(mine, len(samples) / SAMPLE_RATE, opts, backend.info.multilingual))
    return results


def _transcribe_pieces(
    backend: Backend,
    tokenizer: Tokenizer,
    audios: list[np.ndarray],
    owners: list[tuple[int, PieceClock]],
    verdicts: list[np.ndarray],
    opts: LongformOptions,
    progress: ProgressFn | None,
    on_segment: Sequence[SegmentFn | None] | None,
) -> list[Transcript]:
    if not owners:
        return []
    # A recording's prefix starts its first piece only, and its initial prompt (unless the
    # history carries it on) prompts its first piece only, as they do the first window without VAD.
    first = [k == 0 or owners[k - 1][0] != i for k, (i, _) in enumerate(owners)]
    later = dataclasses.replace(
        opts, prefix=None, initial_prompt=opts.initial_prompt if opts.condition_on_prev_tokens else None
    )
    parts: dict[int, Transcript] = {}
    for opening, piece_opts in ((True, opts), (False, later)):
        rows = [k for k in range(len(owners)) if first[k] == opening]
        if rows:
            done = _transcribe_rows(
                backend, tokenizer, audios, owners, verdicts, rows, piece_opts, progress, on_segment
            )
            parts.update(zip(rows, done))
    return [parts[k] for k in range(len(owners))]


def _transcribe_rows(
    backend: Backend,
    tokenizer: Tokenizer,
    audios: list[np.ndarray],
    owners: list[tuple[int, PieceClock]],
    verdicts: list[np.ndarray],
    rows: list[int],
    opts: LongformOptions,
    progress: ProgressFn | None,
    on_segment: Sequence[SegmentFn | None] | None,
) -> list[Transcript]:
    pieces = [owners[k][1].audio(audios[owners[k][0]]) for k in rows]
    speech = [verdicts[k] for k in rows]
    if opts.mode == "chunked":
        return transcribe_chunked(backend, tokenizer, pieces, opts, progress, speech=speech)
    callbacks = None
    if on_segment is not None:
        callbacks = [_mapped_callback(on_segment[owners[k][0]], owners[k][1]) for k in rows]
    return transcribe_sequential(backend, tokenizer, pieces, opts, progress, callbacks, speech)


def _mapped_callback(callback: SegmentFn | None, clock: PieceClock) -> SegmentFn | None:
    if callback is None:
        return None
    return lambda segment: callback(_moved(segment, clock, float("inf")))


def _joined(
    parts: list[tuple[PieceClock, Transcript]], duration: float, opts: LongformOptions, multilingual: bool
) -> Transcript:
    """One recording's transcript from its pieces', on the recording's timeline."""
    segments = [_moved(s, clock, duration) for clock, part in parts for s in part.segments]
    text = ""
    for _, part in parts:
        gap = text and part.text and not text[-1].isspace() and not part.text[0].isspace()
        text += (" " if gap else "") + part.text
    language = next((p.language for _, p in parts if p.language), None)
    return Transcript(
        text=text,
        language=language or (opts.language if multilingual else "en"),
        duration=duration,
        segments=segments,
        mode=opts.mode,
    )


def _moved(segment: Segment, clock: PieceClock, duration: float) -> Segment:
    """`segment` (and its words, when it has them) with times on the recording's timeline."""
    changes: dict[str, Any] = {
        "start": min(clock.original(segment.start), duration),
        "end": min(clock.original(segment.end, is_end=True), duration),
    }
    words = getattr(segment, "words", None)
    if words:
        changes["words"] = [_moved_word(w, clock, duration) for w in words]
    return dataclasses.replace(segment, **changes)


def _moved_word(word: Any, clock: PieceClock, duration: float) -> Any:
    """A word object with start/end (a dataclass or a dict), its times moved."""
    start = min(clock.original(_get(word, "start")), duration)
    end = min(clock.original(_get(word, "end"), is_end=True), duration)
    if isinstance(word, dict):
        return {**word, "start": start, "end": end}
    return dataclasses.replace(word, start=start, end=end)


def _get(word: Any, name: str) -> float:
    return float(word[name] if isinstance(word, dict) else getattr(word, name))
