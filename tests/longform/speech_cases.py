"""Recordings that exercise the lost-speech guard, built from espeak-ng speech (dwkit.speech).

Shared by the guard's tests and benchmarks/guard_wer.py, so both measure the same audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dwkit.audio import load_audio
from dwkit.constants import SAMPLE_RATE
from dwkit.speech import SENTENCES, cached_speech

# A clear sentence, 3 s of silence, then three sentences spoken quietly (-26 dB, a distant second
# speaker): tiny.en closes the first segment with a single timestamp and ends the window there
# (`<|0.00|> The train ... platform.<|3.20|><|endoftext|>`), 11 s of speech ahead (base does not).
EARLY_END_FIRST = 1
EARLY_END_REST = (2, 3, 4)
EARLY_END_PAUSE_S = 3.0
EARLY_END_GAIN = 0.05

# Sentences apart by long silences: the guard must find silence there, not words.
SILENT_GAPS = (8, 10, 12)
SILENT_GAP_S = 32.0  # longer than a window: a guard window after a sentence holds only silence


def early_end_speech(cache_dir: Path) -> tuple[np.ndarray, list[str]]:
    """(16 kHz samples, the sentences spoken) of the early end-of-text recording."""
    first = load_audio(cached_speech([SENTENCES[EARLY_END_FIRST]], cache_dir))
    rest = load_audio(cached_speech([SENTENCES[i] for i in EARLY_END_REST], cache_dir, pause_s=0.3))
    pause = np.zeros(int(EARLY_END_PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    samples = np.concatenate([first, pause, EARLY_END_GAIN * rest]).astype(np.float32)
    return samples, [SENTENCES[i] for i in (EARLY_END_FIRST, *EARLY_END_REST)]


def silent_gaps_speech(cache_dir: Path) -> tuple[np.ndarray, list[str]]:
    """(samples, sentences): each sentence followed by SILENT_GAP_S of silence."""
    gap = np.zeros(int(SILENT_GAP_S * SAMPLE_RATE), dtype=np.float32)
    pieces = []
    for index in SILENT_GAPS:
        pieces += [load_audio(cached_speech([SENTENCES[index]], cache_dir)), gap]
    return np.concatenate(pieces).astype(np.float32), [SENTENCES[i] for i in SILENT_GAPS]


# A sentence, 2.5 s of silence, five sentences 0.15 s apart (24.5 s, one chunk): decoding with
# timestamps, the bundled base model skips the first sentence and repeats the last one's tail;
# decoding without timestamps it hears every word.
SKIPPED_START = (19, 31, 23, 13, 33, 8)
SKIPPED_START_PAUSE_S = 2.5


def skipped_start_speech(cache_dir: Path) -> tuple[np.ndarray, list[str]]:
    """(samples, sentences) of the recording the timestamped decode loses a sentence of."""
    first = load_audio(cached_speech([SENTENCES[SKIPPED_START[0]]], cache_dir))
    rest = load_audio(cached_speech([SENTENCES[i] for i in SKIPPED_START[1:]], cache_dir, pause_s=0.15))
    pause = np.zeros(int(SKIPPED_START_PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([first, pause, rest]).astype(np.float32), [SENTENCES[i] for i in SKIPPED_START]
