"""Chunked long-form transcription: overlapping chunks decoded in batches, then merged.

Reproduces the output of transformers' ASR pipeline with `chunk_length_s`/`stride_length_s`
(the chunk boundaries, one log-mel per chunk, the per-chunk decode, the merge), but not its
execution: chunks from every file are batched through the encoder and decoder together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dwkit.alignment_words import distribute_words, owned_words
from dwkit.constants import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from dwkit.features import log_mel
from dwkit.longform.merge import ChunkOutput, MergedPiece, merge_aligned, merge_chunks
from dwkit.longform.options import LongformOptions
from dwkit.longform.segments import clamp_to_duration
from dwkit.longform.union import fold_in
from dwkit.longform.windows import ProgressFn, WindowState, consume_windows, detect_recording_language
from dwkit.results import Segment, Transcript, Word
from dwkit.runtimes.base import Backend
from dwkit.tokenizer import LANGUAGES, Tokenizer


@dataclass
class Chunk:
    file: int
    start: int  # sample offset
    samples: np.ndarray
    stride_left: int
    stride_right: int


def iter_chunks(
    samples: np.ndarray, file: int, chunk_len: int, stride_left: int, stride_right: int
) -> list[Chunk]:
    """The pipeline's chunk boundaries: step = chunk - both strides; no left stride first, no right stride last."""
    step = chunk_len - stride_left - stride_right
    chunks = []
    for start in range(0, len(samples), step):
        piece = samples[start : start + chunk_len]
        is_last = start + chunk_len >= len(samples)
        left = 0 if start == 0 else stride_left
        right = 0 if is_last else stride_right
        if len(piece) > left:
            chunks.append(Chunk(file, start, piece, left, right))
        if is_last:
            break
    return chunks


def transcribe_chunked(
    backend: Backend,
    tokenizer: Tokenizer,
    audios: list[np.ndarray],
    opts: LongformOptions,
    progress: ProgressFn | None = None,
    speech: Sequence[np.ndarray] | None = None,
) -> list[Transcript]:
    """Cut every recording into chunks, decode all chunks together, merge each recording's.
    `speech[i]` (with --vad): the VAD's speech-or-not per mel frame of recording i (the guard's judge)."""
    chunk_len = int(round(opts.chunk_length_s * SAMPLE_RATE))
    stride = int(round(opts.stride_s * SAMPLE_RATE))
    chunks = [c for i, a in enumerate(audios) for c in iter_chunks(a, i, chunk_len, stride, stride)]
    languages = [opts.language] * len(audios)
    if backend.info.multilingual and opts.language is None and opts.language_detection_segments > 1:
        languages = [detect_recording_language(backend, a, opts) for a in audios]  # else: per chunk
    states = [_chunk_state(c, backend.info.n_mels, languages[c.file]) for c in chunks]
    for chunk, state in zip(chunks, states):  # the words a no-timestamp decode finds are kept too
        state.want_plain = opts.return_timestamps and not opts.exact_transformers  # (longform.union)
        if speech is not None:
            state.speech = speech[chunk.file][chunk.start // HOP_LENGTH :]
    consume_windows(backend, tokenizer, states, opts, timestamps=opts.return_timestamps, progress=progress)
    outputs: dict[int, list[ChunkOutput]] = {i: [] for i in range(len(audios))}
    for chunk, state in zip(chunks, states):
        outputs[chunk.file].append(_chunk_output(chunk, state, backend.info.multilingual, backend.info.eot))
    if opts.return_timestamps and not opts.exact_transformers:  # joined on their whole text
        merged = [merge_aligned(outputs[i], tokenizer) for i in range(len(audios))]
    else:
        merged = [merge_chunks(outputs[i], tokenizer, opts.return_timestamps) for i in range(len(audios))]
    if not opts.exact_transformers:  # a segment whose text was all a repeat (guard.drop_repeat)
        merged = [[p for p in pieces if p.text.strip()] for pieces in merged]
    transcripts = [_transcript(pieces, len(a) / SAMPLE_RATE) for pieces, a in zip(merged, audios)]
    if opts.word_timestamps:
        words: dict[int, list[Word]] = {i: [] for i in range(len(audios))}
        for chunk, state in zip(chunks, states):
            words[chunk.file].extend(_chunk_words(chunk, state))
        for i, transcript in enumerate(transcripts):
            distribute_words(transcript.segments, words[i])
            clamp_to_duration(transcript.segments, transcript.duration)
    return transcripts


def _chunk_words(chunk: Chunk, state: WindowState) -> list[Word]:
    """A chunk's words on the recording's timeline, outside its strides only."""
    start = chunk.start / SAMPLE_RATE
    own_from = start + chunk.stride_left / SAMPLE_RATE
    own_to = start + (len(chunk.samples) - chunk.stride_right) / SAMPLE_RATE
    return owned_words(state.segments, start, own_from, own_to)


def _chunk_state(chunk: Chunk, n_mels: int, language: str | None) -> WindowState:
    """A chunk's own log-mel (normalised over the chunk, as the pipeline's feature extractor does)."""
    return WindowState(
        mel=log_mel(chunk.samples, n_mels),
        max_frames=N_FRAMES,
        language=language,
        progress_scale=(len(chunk.samples) - chunk.stride_left - chunk.stride_right) / N_SAMPLES,
        speech_end=(len(chunk.samples) - chunk.stride_right) // HOP_LENGTH,  # the next chunk has the rest
        opening=chunk.start == 0,  # the prefix starts a file's first chunk only
    )


def _chunk_output(chunk: Chunk, state: WindowState, multilingual: bool, first_special: int) -> ChunkOutput:
    """What the merge reads of one decoded chunk: its tokens (language token first) and strides."""
    language_prefix = state.prompt[1:2] if multilingual else []
    tokens = [t for seg in state.segments for t in seg.tokens]
    if state.plain is not None:
        tokens = fold_in(tokens, state.plain, first_special)
    return ChunkOutput(
        tokens=language_prefix + tokens,
        length_s=len(chunk.samples) / SAMPLE_RATE,
        stride_left_s=chunk.stride_left / SAMPLE_RATE,
        stride_right_s=chunk.stride_right / SAMPLE_RATE,
    )


def _transcript(pieces: list[MergedPiece], duration: float) -> Transcript:
    segments = [
        Segment(
            start=piece.start if piece.start is not None else 0.0,
            end=piece.end if piece.end is not None else duration,
            text=piece.text,
        )
        for piece in pieces
    ]
    language = next((p.language for p in pieces if p.language), None)
    code = {name: c for c, name in LANGUAGES.items()}.get(language, "en") if language else "en"
    return Transcript(
        text="".join(p.text for p in pieces),
        language=code,
        duration=duration,
        segments=clamp_to_duration(segments, duration),
        mode="chunked",
    )
