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
    """The recording's text pieces (one per timestamped segment, or per language without timestamps)."""
    merger = _Merger(tokenizer, return_timestamps)
    for output in outputs:
        merger.add(output)
    return merger.finish()


class _Merger:
    """The pipeline's merge state, fed one chunk at a time (`_decode_asr`'s loop, in parts).

    `previous` collects the token runs of the piece being built, one per chunk it spans;
    they are joined on their longest common sequence when the piece closes.
    """

    def __init__(self, tokenizer: Tokenizer, return_timestamps: bool):
        self.tokenizer, self.info, self.return_timestamps = tokenizer, tokenizer.info, return_timestamps
        self.pieces: list[MergedPiece] = []
        self.piece = MergedPiece("", None, None, None)
        self.last_language: str | None = None
        self.time_offset = 0.0
        self.previous: list[list[int]] = []
        self.current: list[int] = []
        self.skip = False

    def add(self, output: ChunkOutput) -> None:
        ts_begin = self.info.timestamp_begin
        tokens = output.tokens
        self.current = []
        self.time_offset -= output.stride_left_s
        first_timestamp = (
            output.stride_left_s / TIME_PRECISION + ts_begin if output.stride_left_s else ts_begin
        )
        last_timestamp = _last_kept_timestamp(output, ts_begin)
        clock = _WindowClock(ts_begin)
        for i, token in enumerate(tokens):
            if self.info.eot <= token < ts_begin:  # special: only language tokens matter here
                self._language(token)
            elif token >= ts_begin:
                clock.advance(tokens, i, float((token - ts_begin) * TIME_PRECISION))
                time = round(
                    (token - ts_begin) * TIME_PRECISION + self.time_offset + clock.prev_segments_len, 2
                )
                self._timestamp(token, time, first_timestamp, last_timestamp)
            else:
                self.current.append(token)
        self.time_offset += output.length_s - output.stride_right_s
        if self.current:
            self.previous.append(self.current)
        elif not any(p for p in self.previous):
            self.piece = MergedPiece("", None, None, self.last_language)
            self.previous = []

    def finish(self) -> list[MergedPiece]:
        if self.previous:
            self._close()
        return self.pieces

    def _language(self, token: int) -> None:
        code = self.tokenizer.language_of(token)
        language = LANGUAGES.get(code) if code else None
        if language is None:
            return
        if self.last_language and language != self.last_language and not self.return_timestamps:
            self._cut(None)  # without timestamps, a change of language starts a new piece
        self.piece.language = language
        self.last_language = language

    def _timestamp(self, token: int, time: float, first_timestamp: float, last_timestamp: int | None) -> None:
        """Skip the timestamps inside the strides; otherwise open the piece, or close it."""
        if last_timestamp and token >= last_timestamp:
            self.skip = True
        elif self.skip or (self.previous and token < first_timestamp):
            self.skip = False
        elif self.piece.start is None:
            self.piece.start = time
        elif time != self.piece.start:
            self.piece.end = time
            self._cut(self.last_language)

    def _cut(self, language: str | None) -> None:
        self.previous.append(self.current)
        self._close()
        self.previous, self.current = [], []
        self.piece = MergedPiece("", None, None, language)

    def _close(self) -> None:
        self.piece.text = self.tokenizer.decode(longest_common_sequence(self.previous))
        self.pieces.append(self.piece)


def merge_aligned(outputs: list[ChunkOutput], tokenizer: Tokenizer) -> list[MergedPiece]:
    """The recording's timestamped pieces, the chunks joined on their whole text (the guard's merge).

    The pipeline's timestamped merge aligns two chunks only inside the piece that spans their
    overlap: when a timestamp inside the overlap closes a piece, the overlap's words are never
    aligned and come out twice (or are lost). Here every chunk is first turned into text tokens
    and timestamps on the recording's clock; consecutive chunks are then cut where their text
    overlaps best, exactly as the pipeline joins chunks without timestamps (so the text is that
    merge's), and the timestamps between the kept words become the segment times.
    """
    streams = _timed_streams(outputs, tokenizer.info.timestamp_begin, tokenizer)
    kept: list[_Timed] = []
    left, left_from = streams[0] if streams else [], 0
    for right in streams[1:]:
        left_text, right_text = _text_positions(left), _text_positions(right)
        left_cut, right_cut = overlap_cut(
            [left[p].token for p in left_text[left_from:]], [right[p].token for p in right_text]
        )
        kept += left[_after(left_text, left_from - 1) : _before(left_text, left_from + left_cut, len(left))]
        left, left_from = right, right_cut
    if left:
        kept += left[_after(_text_positions(left), left_from - 1) :]
    return _pieces(kept, tokenizer)


@dataclass
class _Timed:
    token: int | None  # a text token, or None for a timestamp
    time: float  # the timestamp's time on the recording's clock (text: unused)
    language: str | None


def _timed_streams(outputs: list[ChunkOutput], ts_begin: int, tokenizer: Tokenizer) -> list[list[_Timed]]:
    """Each chunk's text tokens and timestamps, the timestamps moved to the recording's clock."""
    streams, offset = [], 0.0
    for output in outputs:
        offset -= output.stride_left_s
        clock, language, stream = _WindowClock(ts_begin), None, []
        for i, token in enumerate(output.tokens):
            if tokenizer.info.eot <= token < ts_begin:
                code = tokenizer.language_of(token)
                language = LANGUAGES.get(code, language) if code else language
            elif token >= ts_begin:
                clock.advance(output.tokens, i, float((token - ts_begin) * TIME_PRECISION))
                time = (token - ts_begin) * TIME_PRECISION + offset + clock.prev_segments_len
                stream.append(_Timed(None, round(time, 2), language))
            else:
                stream.append(_Timed(token, 0.0, language))
        streams.append(stream)
        offset += output.length_s - output.stride_right_s
    return streams


def _text_positions(stream: list[_Timed]) -> list[int]:
    return [i for i, item in enumerate(stream) if item.token is not None]


def _after(text: list[int], index: int) -> int:
    """The stream position just after text token `index` (0 before the first)."""
    return text[index] + 1 if 0 <= index < len(text) else 0


def _before(text: list[int], index: int, length: int) -> int:
    """The stream position of text token `index` (the stream's end after the last)."""
    return text[index] if index < len(text) else length


def _pieces(stream: list[_Timed], tokenizer: Tokenizer) -> list[MergedPiece]:
    """One piece per run of text between timestamps; times kept in order across chunk joins."""
    pieces: list[MergedPiece] = []
    start, last, text = 0.0, 0.0, []
    language = None
    for item in stream:
        if item.token is not None:
            language = language if text else item.language
            text.append(item.token)
            continue
        last = max(last, item.time)
        if text:
            pieces.append(MergedPiece(tokenizer.decode(text), start, last, language))
            text = []
        start = last
    if text:
        pieces.append(MergedPiece(tokenizer.decode(text), start, None, language))
    return pieces


def _last_kept_timestamp(output: ChunkOutput, ts_begin: int) -> int | None:
    """The first timestamp token inside the right stride (later ones are the next chunk's)."""
    last: int | None = None
    if not output.stride_right_s:
        return last
    right_stride_start = output.length_s - output.stride_right_s
    for token in reversed(output.tokens):
        if token >= ts_begin:
            if last is not None and (token - ts_begin) * TIME_PRECISION < right_stride_start:
                break
            last = token
    return last


@dataclass
class _WindowClock:
    """Timestamps restart at 0 in each 30 s window a chunk was decoded in: the offset to add."""

    ts_begin: int
    cur_max: float = 0.0
    penultimate: float = 0.0
    prev_segments_len: float = 0.0

    def advance(self, tokens: list[int], i: int, timestamp: float) -> None:
        if timestamp < self.cur_max:
            single_ending = i >= 2 and not (tokens[i - 1] >= self.ts_begin and tokens[i - 2] >= self.ts_begin)
            if single_ending:
                self.prev_segments_len += TIME_PRECISION * N_AUDIO_CTX
            else:
                self.cur_max = self.penultimate
                self.prev_segments_len += self.penultimate
        self.penultimate = self.cur_max
        self.cur_max = timestamp


def longest_common_sequence(runs: list[list[int]]) -> list[int]:
    """Join token runs that overlap: align each on the best-matching overlap, cut in its middle."""
    if not runs:
        return []
    left = runs[0]
    total: list[int] = []
    for right in runs[1:]:
        left_cut, right_cut = overlap_cut(left, right)
        total.extend(left[:left_cut])
        left = right[right_cut:]
    total.extend(left)
    return total


def overlap_cut(left: list[int], right: list[int]) -> tuple[int, int]:
    """Where to cut `left` and `right` to join them: the middle of their best-matching overlap
    (the pipeline's score, favouring long perfect matches); all of `left` without one."""
    best, best_span = 0.0, (len(left), len(left), 0, 0)
    for i in range(1, len(left) + len(right)):
        eps = i / 10000.0
        left_start, left_stop = max(0, len(left) - i), min(len(left), len(left) + len(right) - i)
        right_start, right_stop = max(0, i - len(left)), min(len(right), i)
        matches = int(np.sum(np.array(left[left_start:left_stop]) == np.array(right[right_start:right_stop])))
        score = matches / i + eps
        if matches > 1 and score > best:
            best, best_span = score, (left_start, left_stop, right_start, right_stop)
    left_start, left_stop, right_start, right_stop = best_span
    return (left_stop + left_start) // 2, (right_stop + right_start) // 2
