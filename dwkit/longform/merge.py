"""Merging overlapping chunk transcripts, as transformers' ASR pipeline does for Whisper.

A port of the pipeline's `_decode_asr` (segment timestamps, not word timestamps): chunks
overlap by their strides, so each chunk's tokens are aligned with the text so far on their
longest common sequence and joined at the middle of the overlap; timestamps are shifted by
each chunk's offset and cut at the right stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwkit.constants import N_AUDIO_CTX, TIME_PRECISION
from dwkit.tokenizer import LANGUAGES, Tokenizer


@dataclass
class ChunkOutput:
    tokens: list[int]  # the chunk's decoded tokens (language token first for multilingual models)
    length_s: float
    stride_left_s: float
    stride_right_s: float


@dataclass
class MergedPiece:
    text: str
    start: float | None
    end: float | None
    language: str | None


def merge_chunks(
    outputs: list[ChunkOutput], tokenizer: Tokenizer, return_timestamps: bool
) -> list[MergedPiece]:
    info = tokenizer.info
    ts_begin = info.timestamp_begin
    precision = TIME_PRECISION
    pieces: list[MergedPiece] = []
    last_language: str | None = None
    piece = MergedPiece("", None, None, None)
    time_offset = 0.0
    previous: list[list[int]] = []
    skip = False

    def close(current: MergedPiece, token_runs: list[list[int]]) -> None:
        current.text = tokenizer.decode(longest_common_sequence(token_runs))
        pieces.append(current)

    for output in outputs:
        tokens = output.tokens
        last_timestamp = None
        first_timestamp = ts_begin
        cur_max, prev_segments_len, penultimate = 0.0, 0.0, 0.0
        time_offset -= output.stride_left_s
        right_stride_start = output.length_s - output.stride_right_s
        if output.stride_left_s:
            first_timestamp = output.stride_left_s / precision + ts_begin
        if output.stride_right_s:
            for token in reversed(tokens):
                if token >= ts_begin:
                    if last_timestamp is not None and (token - ts_begin) * precision < right_stride_start:
                        break
                    last_timestamp = token
        current: list[int] = []
        for i, token in enumerate(tokens):
            if info.eot <= token < ts_begin:  # special: only language tokens matter here
                code = tokenizer.language_of(token)
                language = LANGUAGES.get(code) if code else None
                if language is not None:
                    if last_language and language != last_language and not return_timestamps:
                        previous.append(current)
                        close(piece, previous)
                        previous, current = [], []
                        piece = MergedPiece("", None, None, None)
                    piece.language = language
                    last_language = language
            elif token >= ts_begin:
                timestamp = float((token - ts_begin) * precision)
                if timestamp < cur_max:
                    single_ending = i >= 2 and not (tokens[i - 1] >= ts_begin and tokens[i - 2] >= ts_begin)
                    if single_ending:
                        prev_segments_len += precision * N_AUDIO_CTX
                    else:
                        cur_max = penultimate
                        prev_segments_len += penultimate
                penultimate = cur_max
                cur_max = timestamp
                time = round((token - ts_begin) * precision + time_offset + prev_segments_len, 2)
                if last_timestamp and token >= last_timestamp:
                    skip = True
                elif skip or (previous and token < first_timestamp):
                    skip = False
                elif piece.start is None:
                    piece.start = time
                elif time != piece.start:
                    piece.end = time
                    previous.append(current)
                    close(piece, previous)
                    previous, current = [], []
                    piece = MergedPiece("", None, None, last_language)
            else:
                current.append(token)
        time_offset += output.length_s - output.stride_right_s
        if current:
            previous.append(current)
        elif not any(p for p in previous):
            piece = MergedPiece("", None, None, last_language)
            previous = []
    if previous:
        close(piece, previous)
    return pieces


def longest_common_sequence(runs: list[list[int]]) -> list[int]:
    """Join token runs that overlap: align each on the best-matching overlap, cut in its middle."""
    if not runs:
        return []
    left = runs[0]
    total: list[int] = []
    for right in runs[1:]:
        best, best_span = 0.0, (len(left), len(left), 0, 0)
        for i in range(1, len(left) + len(right)):
            eps = i / 10000.0  # favour long perfect matches
            left_start, left_stop = (
                max(0, len(left) - i),
                min(len(left), len(left) + len(right) - i),
            )
            right_start, right_stop = max(0, i - len(left)), min(len(right), i)
            matches = int(
                np.sum(np.array(left[left_start:left_stop]) == np.array(right[right_start:right_stop]))
            )
            score = matches / i + eps
            if matches > 1 and score > best:
                best, best_span = score, (left_start, left_stop, right_start, right_stop)
        left_start, left_stop, right_start, right_stop = best_span
        total.extend(left[: (left_stop + left_start) // 2])
        left = right[(right_stop + right_start) // 2 :]
    total.extend(left)
    return total
