"""Cutting one window's tokens into timestamped segments, as transformers' long-form does."""

from __future__ import annotations

from dataclasses import dataclass

from dwkit.constants import FRAME_SECONDS, INPUT_STRIDE, TIME_PRECISION
from dwkit.results import Segment


@dataclass
class RawSegment:
    start: float
    end: float
    tokens: list[int]  # with their timestamp tokens


def split_window(
    tokens: list[int], timestamp_begin: int, time_offset: float, window_frames: int
) -> tuple[list[RawSegment], int]:
    """Segments of one decoded window and how many mel frames to advance.

    Consecutive timestamp pairs end segments. A window that ends on a single timestamp has
    no speech after it, so the whole window is consumed; otherwise the unfinished last
    segment is dropped and the next window starts at the last complete timestamp.
    """
    is_ts = [t >= timestamp_begin for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    if not cuts:
        stamps = [t for t in tokens if t >= timestamp_begin]
        last_pos = float(int(window_frames * FRAME_SECONDS / TIME_PRECISION))
        if stamps and stamps[-1] != timestamp_begin:
            last_pos = float(stamps[-1] - timestamp_begin)
        segment = RawSegment(time_offset, time_offset + last_pos * TIME_PRECISION, list(tokens))
        return [segment], window_frames
    if single_ending:
        cuts.append(len(tokens))
    else:
        cuts[-1] += 1  # keep the closing timestamp in the last complete segment
    segments, last = [], 0
    for n, cut in enumerate(cuts):
        piece = tokens[last:cut]
        end_index = -2 if (n == len(cuts) - 1 and not single_ending) else -1
        start = time_offset + (piece[0] - timestamp_begin) * TIME_PRECISION
        end = time_offset + (piece[end_index] - timestamp_begin) * TIME_PRECISION
        segments.append(RawSegment(start, end, piece))
        last = cut
    if single_ending:
        return segments, window_frames
    return segments, (tokens[last - 2] - timestamp_begin) * INPUT_STRIDE


def clamp_to_duration(segments: list[Segment], duration: float) -> list[Segment]:
    """The segments with no time past the end of the audio.

    The last window is zero-padded to 30 s, so its closing timestamp (or the window's end,
    when it has none) can fall after the recording ends (145.24 s on a 145.05 s file);
    subtitles must not outlast the audio.
    """
    for segment in segments:
        segment.start = min(segment.start, duration)
        segment.end = min(segment.end, duration)
        for word in segment.words or []:
            word.start, word.end = min(word.start, duration), min(word.end, duration)
    return segments
