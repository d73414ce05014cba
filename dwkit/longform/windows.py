"""The window engine both long-form modes run: decode a log-mel window by window to its end.

Reads top to bottom as OpenAI's transcribe loop, batched across recordings: detect the
language once per recording (multilingual models, none given), then while any recording is
unfinished cut the 30 s window at its seek position (inside the current clip when
`clip_timestamps` are given; the prompt per dwkit.longform.prompt), decode it with temperature fallback,
split it on timestamps into segments (or skip it as silence), and advance the seek to the
last complete timestamp. The sequential mode feeds it whole recordings, the chunked mode one
state per chunk (transformers' generate does the same within one 30 s input: after a window
that ends mid-segment it seeks to the last timestamp and decodes the rest). Unless
`exact_transformers` is set, a window that ends early on a single timestamp is decoded on
from there too (dwkit.longform.guard).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from dwkit.alignment_words import WindowWords, add_word_timestamps
from dwkit.constants import FRAME_SECONDS, HOP_LENGTH, N_FRAMES, N_SAMPLES
from dwkit.decoding.options import Hypothesis
from dwkit.features import log_mel, pad_or_trim
from dwkit.longform.fallback import WindowResult, decode_with_fallback, select_rows
from dwkit.longform.guard import drop_repeat, judged_silent, should_resume
from dwkit.longform.options import LongformOptions
from dwkit.longform.prompt import (
    choose_language,
    hotword_tokens,
    init_tokens,
    initial_prompt_tokens,
    prefix_tokens,
    previous_text,
)
from dwkit.longform.segments import RawSegment, split_window
from dwkit.results import Segment
from dwkit.runtimes.base import Backend, EncoderOutput
from dwkit.tokenizer import Tokenizer

ProgressFn = Callable[[float], None]  # called with seconds of audio just finished
SegmentFn = Callable[[Segment], None]  # called with each segment as soon as its window is decoded


@dataclass
class WindowState:
    """One recording (or one chunk) being consumed window by window."""

    mel: np.ndarray
    max_frames: int
    seek: int = 0
    language: str | None = None
    prompt: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    condition: bool = True
    progress_scale: float = 1.0  # audio seconds per second of mel consumed
    on_segment: SegmentFn | None = None  # streams this recording's segments (dwkit serve)
    speech_end: int | None = None  # frames of the state's own audio (None: max_frames); the guard's limit
    resume: int | None = None  # a guard window in flight: the seek the plain rule took, if it is silence
    want_plain: bool = False  # also decode the first window without timestamps (dwkit.longform.union)
    plain: list[int] | None = None  # that decode's tokens
    speech: np.ndarray | None = None  # with --vad: speech or not per mel frame (the guard's judge)
    opening: bool = True  # holds the recording's first window, which takes the prefix (chunked: chunk 0)
    clips: list[tuple[int, int]] | None = None  # (start, end) mel frames still to transcribe; None: all
    context: list[int] = field(default_factory=list)  # the initial prompt's ids, previous text to come
    hotwords: list[int] = field(default_factory=list)
    prefix: list[int] = field(default_factory=list)  # forced start of the next window (the first only)

    @property
    def done(self) -> bool:
        return self.seek >= self.max_frames

    @property
    def limit(self) -> int:
        """Where the current window must stop: the end of the current clip, or of the mel."""
        return self.clips[0][1] if self.clips else self.max_frames

    def enter_clip(self) -> None:
        """Seek into the current clip; past its end, on to the next one; after the last: done."""
        if self.clips is None:
            return
        while self.clips and self.seek >= self.clips[0][1]:
            self.clips.pop(0)
        self.seek = max(self.seek, self.clips[0][0]) if self.clips else max(self.seek, self.max_frames)


def consume_windows(
    backend: Backend,
    tokenizer: Tokenizer,
    states: list[WindowState],
    opts: LongformOptions,
    timestamps: bool,
    progress: ProgressFn | None = None,
) -> None:
    """Decode every state's mel to its end, window by window, batching across states."""
    _set_prompts(backend, tokenizer, states, opts, timestamps)
    while True:
        active = [s for s in states if not s.done]
        if not active:
            break
        for batch in _batches(active, opts.batch_size):
            _step(backend, tokenizer, batch, opts, timestamps, progress)


def _set_prompts(
    backend: Backend, tokenizer: Tokenizer, states: list[WindowState], opts: LongformOptions, timestamps: bool
) -> None:
    """Each state's language (detected when not given), start-of-transcript sequence, initial
    prompt, hotwords and prefix (on the opening window only)."""
    for state in states:
        state.enter_clip()
    _detect_languages(backend, [s for s in states if backend.info.multilingual and s.language is None], opts)
    context = initial_prompt_tokens(tokenizer, opts.initial_prompt)
    hotwords = hotword_tokens(tokenizer, opts.hotwords)
    prefix = prefix_tokens(tokenizer, opts.prefix, timestamps)
    for state in states:
        state.prompt = init_tokens(tokenizer, state.language, opts.task, timestamps=timestamps)
        state.context, state.hotwords = list(context), hotwords
        state.prefix = list(prefix) if state.opening else []


def _detect_languages(backend: Backend, states: list[WindowState], opts: LongformOptions) -> None:
    """faster-whisper's detection: up to `language_detection_segments` 30 s windows from each
    state's first seek, stopping at the first whose top language passes the threshold
    (dwkit.longform.prompt.choose_language); windows of many states are encoded together."""
    seen: dict[int, list[dict[str, float]]] = {id(s): [] for s in states}
    pending = states
    for k in range(opts.language_detection_segments):
        rows = [s for s in pending if k == 0 or s.seek + k * N_FRAMES < _content_end(s)]
        for batch in _batches(rows, opts.batch_size):
            start = [s.seek + k * N_FRAMES for s in batch]
            enc = backend.encode(
                np.stack([pad_or_trim(s.mel[:, a : a + N_FRAMES]) for s, a in zip(batch, start)])
            )
            for state, probs in zip(batch, backend.detect_language(enc)):
                seen[id(state)].append(probs)
        pending = [s for s in rows if max(seen[id(s)][-1].values()) <= opts.language_detection_threshold]
    for state in states:
        state.language = choose_language(seen[id(state)], opts.language_detection_threshold)


def detect_recording_language(backend: Backend, samples: np.ndarray, opts: LongformOptions) -> str:
    """One recording's language by the same rule, on its first `language_detection_segments`
    windows (the chunked mode's, when it looks past one chunk)."""
    samples = samples[: opts.language_detection_segments * N_SAMPLES]
    mel = log_mel(samples, backend.info.n_mels)
    state = WindowState(mel=mel, max_frames=mel.shape[-1], speech_end=len(samples) // HOP_LENGTH)
    _detect_languages(backend, [state], opts)
    return str(state.language)


def _content_end(state: WindowState) -> int:
    return state.max_frames if state.speech_end is None else state.speech_end


def _step(
    backend: Backend,
    tokenizer: Tokenizer,
    batch: list[WindowState],
    opts: LongformOptions,
    timestamps: bool,
    progress: ProgressFn | None,
) -> None:
    """One window of every state in `batch`: encode, decode with fallback, split, advance."""
    info = backend.info
    num_frames = [min(s.limit - s.seek, N_FRAMES) for s in batch]
    windows = np.stack([pad_or_trim(s.mel[:, s.seek : s.seek + n]) for s, n in zip(batch, num_frames)])
    enc = backend.encode(windows)
    prompts = [
        _prev_tokens(s, info.sot_prev, info.timestamp_begin, info.n_text_ctx, opts) + s.prompt + s.prefix
        for s in batch
    ]
    results = decode_with_fallback(backend, enc, prompts, opts, timestamps=timestamps)
    _decode_plain(backend, tokenizer, enc, batch, opts)
    timed: list[WindowWords] = []  # windows whose new segments get word timestamps
    for row, (state, frames, result) in enumerate(zip(batch, num_frames, results)):
        before, kept = state.seek, len(state.segments)
        if state.prefix:  # the forced start is the window's text too
            result.hypothesis = replace(result.hypothesis, tokens=state.prefix + result.hypothesis.tokens)
            state.prefix = []
        if not (result.skipped or opts.condition_on_prev_tokens or opts.exact_transformers):
            state.context = []  # faster-whisper: without conditioning the prompt serves the first window
        hyp = result.hypothesis
        state.condition = opts.condition_on_prev_tokens and hyp.temperature < 0.5
        resume, state.resume = state.resume, None
        if resume is not None and (result.skipped or judged_silent(hyp, opts)):
            state.seek = resume  # the guard found silence: continue as the plain rule would have
        elif result.skipped:
            state.seek += frames
        else:
            state.seek = _take(state, tokenizer, result, frames, opts, info.timestamp_begin)
            if opts.word_timestamps:
                new = state.segments[kept:]
                timed.append(WindowWords(row, new, state.language, before * FRAME_SECONDS, frames))
        state.enter_clip()
        if progress:
            progress((min(state.seek, state.max_frames) - before) * FRAME_SECONDS * state.progress_scale)
    if timed:
        add_word_timestamps(backend, tokenizer, enc, timed, opts.task)


def _take(
    state: WindowState,
    tokenizer: Tokenizer,
    result: WindowResult,
    frames: int,
    opts: LongformOptions,
    timestamp_begin: int,
) -> int:
    """Keep a decoded window's segments; the new seek (the guard's, when it decodes on)."""
    hyp = result.hypothesis
    raw, advance = split_window(hyp.tokens, timestamp_begin, state.seek * FRAME_SECONDS, frames)
    if not opts.exact_transformers and state.segments:  # decoding on from a timestamp can hear its tail again
        raw[0].tokens = drop_repeat(state.segments[-1].tokens, raw[0].tokens, timestamp_begin)
    speech_end = min(_content_end(state), state.limit)
    early = should_resume(opts, hyp.tokens, timestamp_begin, state.seek, speech_end, state.speech)
    if early is not None:
        state.resume = state.seek + advance
        advance = early
        # the closing timestamp doubled, as a complete segment the window continues after
        # is written: the chunk merge's clock then restarts the next window there, not 30 s on
        raw[-1].tokens.append(hyp.tokens[-1])
    new = [_segment(tokenizer, r, hyp, result.compression_ratio) for r in raw]
    state.segments.extend(new)
    if state.on_segment is not None:
        for segment in new:
            if opts.exact_transformers or segment.text.strip():  # not a segment that was all a repeat
                state.on_segment(segment)
    return state.seek + advance


def _decode_plain(
    backend: Backend,
    tokenizer: Tokenizer,
    enc: EncoderOutput,
    batch: list[WindowState],
    opts: LongformOptions,
) -> None:
    """The no-timestamp decode of the states that want one, on the encoder output just made."""
    rows = [i for i, s in enumerate(batch) if s.want_plain and s.plain is None]
    if not rows:
        return
    sub = enc if len(rows) == len(batch) else select_rows(backend, enc, rows)
    prompts = [init_tokens(tokenizer, batch[i].language, opts.task, timestamps=False) for i in rows]
    for i, result in zip(rows, decode_with_fallback(backend, sub, prompts, opts, timestamps=False)):
        batch[i].plain = [] if result.skipped else result.hypothesis.tokens


def _prev_tokens(
    state: WindowState, sot_prev: int, timestamp_begin: int, n_text_ctx: int, opts: LongformOptions
) -> list[int]:
    """<|startofprev|> + hotwords (no prefix in this window) + the previous text: the initial
    prompt, and with conditioning on the tokens already transcribed after it (none after a
    high-temperature window, as transformers and OpenAI reset it)."""
    hotwords = [] if state.prefix else state.hotwords
    if opts.condition_on_prev_tokens:
        started = bool(state.segments or state.context)
        history = list(state.context) if state.condition else []
        for seg in state.segments if state.condition else []:
            ends_double = len(seg.tokens) > 2 and seg.tokens[-2] >= timestamp_begin
            history.extend(seg.tokens[:-1] if ends_double else seg.tokens)
    else:
        started, history = bool(state.context), state.context
    if not (started or hotwords):
        return []
    return previous_text(sot_prev, hotwords, history, n_text_ctx)


def _segment(tokenizer: Tokenizer, raw: RawSegment, hyp: Hypothesis, ratio: float) -> Segment:
    return Segment(
        start=round(float(raw.start), 3),
        end=round(float(raw.end), 3),
        text=tokenizer.decode(raw.tokens),
        tokens=raw.tokens,
        avg_logprob=hyp.avg_logprob,
        no_speech_prob=hyp.no_speech_prob,
        temperature=hyp.temperature,
        compression_ratio=ratio,
    )


def _batches(items: list, size: int) -> list[list]:  # type: ignore[type-arg]
    return [items[i : i + size] for i in range(0, len(items), size)]
