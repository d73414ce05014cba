"""Token-to-audio alignment for word timestamps: alignment heads, attention smoothing, DTW.

What OpenAI's `whisper/timing.py` (`find_alignment`) and transformers'
`WhisperGenerationMixin._extract_token_timestamps` do, written once here in numpy because
neither can be called on our backends' outputs: OpenAI's needs its own torch model and
hooks, transformers' lives inside `generate` and takes the torch cross-attention tuples
of a generation run. Every step backend hands over its alignment heads' cross-attention
(`StepBackend.cross_attentions`); the steps below turn it into the DTW path that
`dwkit.words` times words from. CTranslate2 runs the same algorithm natively
(`Whisper.align`), so the ct2 backend skips this module's DTW.

The convention is OpenAI's (and CTranslate2's): the decoder is teacher-forced on
prompt + <|notimestamps|> + text + <|endoftext|>, and attention row i is the one that
predicts text token i (row n predicts end-of-text), so the path has n + 1 text indices.
"""

from __future__ import annotations

import logging

import numpy as np

from dwkit.constants import INPUT_STRIDE
from dwkit.model_info import ModelInfo

log = logging.getLogger(__name__)

MEDIAN_FILTER_WIDTH = 7  # OpenAI's and transformers' default (generation_config.median_filter_width)
_warned: set[tuple[int, str]] = set()


def alignment_heads(info: ModelInfo) -> list[tuple[int, int]]:
    """The (decoder layer, head) pairs whose cross-attention follows the audio.

    From the model's generation config when every pair exists in this model. Otherwise
    (none given, or the teacher's heads copied into a distilled student with fewer decoder
    layers: distil-large-v3's config once carried large-v3's 32-layer heads) every head of
    the last decoder layer, which is CTranslate2's default and what distil-large-v3's fixed
    config lists ([[1, 0] .. [1, 19]]). Logged once per model shape, never an error.
    """
    layers, heads = info.decoder_layers, info.decoder_heads
    given = [(int(layer), int(head)) for layer, head in info.alignment_heads]
    valid = [(layer, head) for layer, head in given if 0 <= layer < layers and 0 <= head < heads]
    if given and len(valid) == len(given):
        return valid
    fallback = [(layers - 1, head) for head in range(heads)]
    reason = (
        "the model's config names no alignment heads"
        if not given
        else f"{len(given) - len(valid)} of its {len(given)} alignment heads point past its "
        f"{layers} decoder layers x {heads} heads (a distilled student with its teacher's heads?)"
    )
    key = (layers, reason)
    if key not in _warned:
        _warned.add(key)
        log.warning("word timestamps: %s; using all %d heads of the last decoder layer", reason, heads)
    return fallback


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of the last axis, edges reflected (transformers' `_median_filter`)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def alignment_matrix(weights: np.ndarray, num_frames: int, width: int = MEDIAN_FILTER_WIDTH) -> np.ndarray:
    """weights [heads, tokens, encoder frames] -> the [tokens, frames] cost DTW runs on (negated).

    Cropped to the audio's encoder frames (mel frames // 2), each head standardised over the
    tokens, median-filtered over time, heads averaged: transformers' steps, in its order.
    """
    frames = max(1, num_frames // INPUT_STRIDE)
    w = np.asarray(weights, dtype=np.float64)[..., :frames]
    mean = w.mean(axis=-2, keepdims=True)
    std = w.std(axis=-2, keepdims=True)
    w = (w - mean) / np.where(std > 0, std, 1.0)
    return median_filter(w, width).mean(axis=0)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic path through `cost` [tokens, frames]: (text indices, time indices).

    The recursion, float32 accumulator, tie-breaking and backtrace of OpenAI's `dtw_cpu`
    (transformers' `_dynamic_time_warping` copies it), computed one anti-diagonal at a time:
    cells on an anti-diagonal depend only on the two before it, so each is a few numpy
    operations on slices, instead of a Python loop over every cell (OpenAI compiles that loop
    with numba, which we do not depend on). Stored skewed, `acc[d, i]` is cell (i, d - i).
    """
    n, m = cost.shape
    diagonals = n + m + 1
    rows = np.arange(n + 1)[None, :]
    cols = np.arange(diagonals)[:, None] - rows
    inside = (rows >= 1) & (cols >= 1) & (cols <= m)
    skewed = np.zeros((diagonals, n + 1), dtype=np.float64)
    skewed[inside] = cost[np.broadcast_to(rows, inside.shape)[inside] - 1, cols[inside] - 1]
    acc = np.full((diagonals, n + 1), np.inf, dtype=np.float32)
    trace = np.full((diagonals, n + 1), -1, dtype=np.int8)
    acc[0, 0] = 0
    for d in range(2, diagonals):
        lo, hi = max(1, d - m), min(n, d - 1) + 1
        c0, c1, c2 = acc[d - 2, lo - 1 : hi - 1], acc[d - 1, lo - 1 : hi - 1], acc[d - 1, lo:hi]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2)).astype(np.int8)
        acc[d, lo:hi] = skewed[d, lo:hi] + np.where(t == 0, c0, np.where(t == 1, c1, c2))
        trace[d, lo:hi] = t
    i, j = n, m
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        step = 2 if i == 0 else 1 if j == 0 else trace[i + j, i]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(text[::-1], dtype=np.int64), np.array(time[::-1], dtype=np.int64)


def text_token_probs(logits: np.ndarray, text: list[int], eot: int) -> list[float]:
    """P(text token i) from the rows that predict them, softmax over the text vocabulary (OpenAI's)."""
    rows = np.asarray(logits[: len(text), :eot], dtype=np.float64)
    rows = rows - rows.max(axis=-1, keepdims=True)
    probs = np.exp(rows)
    probs /= probs.sum(axis=-1, keepdims=True)
    return [float(probs[i, token]) for i, token in enumerate(text)]
