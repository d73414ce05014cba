"""The lost-speech guard: a window that ends early is decoded on from its last timestamp.

OpenAI's rule (and transformers' with it) treats a window whose tokens end on a single
timestamp (`<|0.00|> text<|5.00|><|endoftext|>`) as fully consumed: the engine seeks to the
window's end. Whisper emits that ending too early now and then, with seconds of speech still
ahead in the window, and those words are lost (in the chunked mode, every word of the chunk
after the first segment that the next chunk's left stride does not cover). The guard treats
such an ending like an unfinished segment instead: seek to the last timestamp and decode the
rest, as the engine does after an unfinished segment. Whether the rest holds speech is the
model's own judgement: a guard window whose no-speech probability is above the threshold is
dropped, and the state seeks to where the plain rule would have gone, so silence gets no text.
With --vad the VAD is asked first: no guard window where it hears no speech after the timestamp.
A closing timestamp placed before the speech really ended makes the next window start with
the tail of words already kept, which the model may transcribe again (after a guard's seek and
after an unfinished segment's alike): the first segment of every window after the first loses
the text it repeats of the segment before it.
"""

from __future__ import annotations

from difflib import SequenceMatcher

import numpy as np

from dwkit.constants import FRAMES_PER_SECOND, INPUT_STRIDE
from dwkit.decoding.options import Hypothesis
from dwkit.longform.options import LongformOptions

MIN_REMAINDER_FRAMES = FRAMES_PER_SECOND  # less than 1 s after the last timestamp: not worth a window
NO_SPEECH_THRESHOLD = 0.6  # the judge when no_speech_threshold is unset (OpenAI's default)


def early_end(tokens: list[int], timestamp_begin: int) -> int | None:
    """Mel frames from the window start to its closing timestamp, when the window ends on a
    single timestamp after text (the ending the plain rule takes for "nothing follows")."""
    if len(tokens) < 2 or tokens[-1] < timestamp_begin or tokens[-2] >= timestamp_begin:
        return None
    return (tokens[-1] - timestamp_begin) * INPUT_STRIDE


def should_resume(
    opts: LongformOptions,
    tokens: list[int],
    timestamp_begin: int,
    seek: int,
    speech_end: int,
    speech: np.ndarray | None = None,
) -> int | None:
    """The frames to advance instead of the whole window, when the guard decodes on.

    `speech` (with --vad): the VAD's verdict per mel frame of the state's audio; where it hears
    no speech after the closing timestamp, nothing is left to decode."""
    if opts.exact_transformers:
        return None
    advance = early_end(tokens, timestamp_begin)
    if not advance or seek + advance + MIN_REMAINDER_FRAMES > speech_end:
        return None
    if speech is not None and not speech[seek + advance : speech_end].any():
        return None
    return advance


def judged_silent(hyp: Hypothesis, opts: LongformOptions) -> bool:
    """A guard window the model itself calls silence (no-speech probability alone: the plain
    skip rule also asks for a low log-probability, which a hallucination need not have)."""
    threshold = NO_SPEECH_THRESHOLD if opts.no_speech_threshold is None else opts.no_speech_threshold
    return hyp.no_speech_prob is not None and hyp.no_speech_prob > threshold


def drop_repeat(previous: list[int], tokens: list[int], timestamp_begin: int) -> list[int]:
    """`tokens` (a segment, timestamps included) without the leading text that repeats the end of
    `previous` (the segment before it): when at least half of its text matches, the text up to
    where `previous` ended, aligned on the last match, goes. difflib, not the chunk merge's longest common sequence: the repeat
    is often inexact ("snowing" heard again as "knowing") and need not be a suffix of `previous`.
    """
    text = [i for i, t in enumerate(tokens) if t < timestamp_begin]
    words = [tokens[i] for i in text]
    before = [t for t in previous if t < timestamp_begin]
    blocks = [b for b in SequenceMatcher(None, before, words, autojunk=False).get_matching_blocks() if b.size]
    if not words or 2 * sum(b.size for b in blocks) < len(words):
        return tokens
    last = blocks[-1]
    # the repeat runs as far as `previous` did: past the last match by what `previous` had left
    cut = last.b + last.size + len(before) - last.a - last.size
    repeated = set(text[:cut])
    return [t for i, t in enumerate(tokens) if i not in repeated]
