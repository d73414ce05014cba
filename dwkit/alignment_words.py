"""Word timestamps: group a window's text tokens into words and time them on its DTW path.

Grouping follows OpenAI's `whisper/tokenizer.py` (`split_to_word_tokens`) as transformers'
`_combine_tokens_into_words` copies it: languages written without spaces (zh, ja, th, lo,
my, yue) split wherever the tokens decode to whole unicode characters, the others at
tokens that start with a space or are punctuation; then punctuation is merged into its
neighbour (opening marks onto the next word, closing marks onto the previous one).
A word starts where the DTW path first reaches the row that predicts its first token and
ends where it reaches the row after its last token (OpenAI's `find_alignment`; transformers'
pipeline reports the same interval). Its probability is the mean of its tokens'
probabilities, as OpenAI and faster-whisper report it (transformers reports none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwkit.alignment import alignment_heads
from dwkit.constants import TIME_PRECISION
from dwkit.errors import ModelError
from dwkit.longform.prompt import init_tokens
from dwkit.results import Segment, Word
from dwkit.runtimes.base import EncoderOutput, TokenAlignment
from dwkit.tokenizer import LANGUAGES, Tokenizer

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


@dataclass
class WindowWords:
    """One decoded window whose segments get words: its batch row and where its audio starts."""

    row: int
    segments: list[Segment]
    language: str | None
    offset_s: float  # the window's start on the state's timeline
    num_frames: int  # mel frames of real audio in the window


def split_to_word_tokens(
    tokenizer: Tokenizer, tokens: list[int], language: str | None
) -> tuple[list[str], list[list[int]]]:
    """Words and the tokens of each (text tokens only), punctuation merged."""
    code = _code(language)
    if code in NO_SPACE_LANGUAGES:
        words, word_tokens = _split_on_unicode(tokenizer, tokens)
    else:
        words, word_tokens = _split_on_spaces(tokenizer, tokens)
    return _merge_punctuations(words, word_tokens)


def words_from_alignment(
    tokenizer: Tokenizer,
    pieces: list[list[int]],
    alignment: TokenAlignment,
    language: str | None,
    offset_s: float,
) -> list[list[Word]]:
    """The timed words of each piece (a segment's text tokens) of one window, aligned together.

    Words are grouped within each segment, as transformers' pipeline groups them, so a
    segment's words always join to its text (a token without a leading space that opens a
    segment does not glue onto the last word of the one before).
    """
    jumps = np.pad(np.diff(alignment.text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = alignment.time_indices[jumps] * TIME_PRECISION
    probs = alignment.token_probs
    out, first = [], 0
    for tokens in pieces:
        words, word_tokens = split_to_word_tokens(tokenizer, tokens, language)
        bounds = first + np.cumsum([0] + [len(t) for t in word_tokens])
        out.append(
            [
                Word(
                    start=round(float(jump_times[begin]) + offset_s, 2),
                    end=round(float(jump_times[end]) + offset_s, 2),
                    word=word,
                    probability=float(np.mean(probs[begin:end])),
                )
                for word, begin, end in zip(words, bounds[:-1], bounds[1:])
            ]
        )
        first += len(tokens)
    return out


def add_word_timestamps(
    backend: object, tokenizer: Tokenizer, enc: EncoderOutput, windows: list[WindowWords], task: str
) -> None:
    """Set `words` on every segment of `windows` (rows of `enc`), one align call for the batch.

    A window's segments are aligned together (as OpenAI does: the DTW sees the whole
    window's text), then each segment keeps its own words.
    """
    align = getattr(backend, "align", None)
    if align is None:
        raise ModelError(f"the {getattr(backend, 'name', '?')} backend cannot align words (no `align`)")
    pieces = [[[t for t in s.tokens if tokenizer.is_text(t)] for s in w.segments] for w in windows]
    texts = [[t for piece in window for t in piece] for window in pieces]
    todo = [i for i, text in enumerate(texts) if text]
    for w in windows:
        for segment in w.segments:
            segment.words = []
    if not todo:
        return
    rows = [windows[i].row for i in todo]
    sub = enc if rows == list(range(enc.batch_size)) else backend.select(enc, rows)  # type: ignore[attr-defined]
    prompts = [init_tokens(tokenizer, windows[i].language, task, timestamps=False) for i in todo]
    heads = alignment_heads(tokenizer.info)
    alignments = align(sub, prompts, [texts[i] for i in todo], [windows[i].num_frames for i in todo], heads)
    for i, alignment in zip(todo, alignments):
        window = windows[i]
        timed = words_from_alignment(tokenizer, pieces[i], alignment, window.language, window.offset_s)
        for segment, words in zip(window.segments, timed):
            segment.words = [_inside(word, segment) for word in words]


def _inside(word: Word, segment: Segment) -> Word:
    """The word kept inside its segment's times.

    The path's row after a segment's last word predicts the segment's closing timestamp (or,
    last in the window, end-of-text), which the DTW can place well after the speech; the
    segment's own end is the model's better guess there (OpenAI prefers it too).
    """
    word.end = max(min(word.end, segment.end), segment.start)
    word.start = min(max(word.start, segment.start), word.end)
    return word


def _code(language: str | None) -> str:
    if not language:
        return "en"
    lowered = language.lower()
    return {name: code for code, name in LANGUAGES.items()}.get(lowered, lowered)


def _split_on_unicode(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Cut wherever the tokens so far decode to whole characters (a multi-byte character
    split over tokens decodes to U+FFFD until its last byte arrives)."""
    full = tokenizer.decode(tokens)
    words: list[str] = []
    word_tokens: list[list[int]] = []
    current: list[int] = []
    offset = 0
    for token in tokens:
        current.append(token)
        decoded = tokenizer.decode(current)
        cut = decoded.find("\ufffd")
        if cut < 0 or (offset + cut < len(full) and full[offset + cut] == "\ufffd"):
            words.append(decoded)
            word_tokens.append(current)
            current = []
            offset += len(decoded)
    return words, word_tokens


def _split_on_spaces(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for subword, sub_tokens in zip(*_split_on_unicode(tokenizer, tokens)):
        starts_word = subword.startswith(" ") or subword.strip() in _PUNCTUATION
        if starts_word or not words:
            words.append(subword)
            word_tokens.append(list(sub_tokens))
        else:
            words[-1] += subword
            word_tokens[-1].extend(sub_tokens)
    return words, word_tokens


def _merge_punctuations(words: list[str], tokens: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """Opening marks join the next word, closing marks the previous one (OpenAI's merge_punctuations)."""
    words, tokens = list(words), [list(t) for t in tokens]
    i, j = len(words) - 2, len(words) - 1
    while i >= 0:
        if words[i].startswith(" ") and words[i].strip() in PREPEND_PUNCTUATIONS:
            words[j], tokens[j] = words[i] + words[j], tokens[i] + tokens[j]
            words[i], tokens[i] = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):
        if not words[i].endswith(" ") and words[j] in APPEND_PUNCTUATIONS:
            words[i], tokens[i] = words[i] + words[j], tokens[i] + tokens[j]
            words[j], tokens[j] = "", []
        else:
            i = j
        j += 1
    kept = [n for n, w in enumerate(words) if w]
    return [words[n] for n in kept], [tokens[n] for n in kept]


def owned_words(segments: list[Segment], offset_s: float, own_from: float, own_to: float) -> list[Word]:
    """The words of one chunk shifted onto the recording's timeline, only those whose middle
    lies in [own_from, own_to): the part of the chunk outside its strides, so that two
    overlapping chunks never give a word twice (the merge joins their text the same way)."""
    out = []
    for segment in segments:
        for word in segment.words or []:
            start, end = word.start + offset_s, word.end + offset_s
            if own_from <= (start + end) / 2 < own_to:
                out.append(Word(round(start, 2), round(end, 2), word.word, word.probability))
    return out


def distribute_words(segments: list[Segment], words: list[Word]) -> None:
    """Give merged segments the words that fall in them (by the word's middle; one in a gap
    between segments goes to the nearer one)."""
    for segment in segments:
        segment.words = []
    if not segments:
        return
    for word in words:
        middle = (word.start + word.end) / 2
        nearest = min(
            segments,
            key=lambda s: (
                0.0 if s.start <= middle <= s.end else min(abs(middle - s.start), abs(middle - s.end))
            ),
        )
        nearest.words.append(word)  # type: ignore[union-attr]
