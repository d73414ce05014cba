"""Synthetic English speech with a known transcript, spoken by espeak-ng.

Tests, the demo and benchmarks need audio whose words are known: `synthesize` speaks
sentences one by one, joins them with silent pauses and writes a 16 kHz mono 16-bit wav.
`SENTENCES` is a built-in set of plain, distinct sentences (no numbers, no abbreviations, no
words spelt differently in British and American English), so the word error rate of a
transcript against them means something.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dwkit.errors import DwkitError

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
DEFAULT_SPEED = 150  # words per minute; espeak-ng's default 175 is hard to follow

SENTENCES = (
    "The old lighthouse keeper climbed the stairs every evening before sunset.",
    "Fresh bread from the village bakery smells wonderful in the morning.",
    "My sister planted tomatoes and peppers in the garden behind the house.",
    "The train to the coast leaves from the northern platform.",
    "Please remember to close the window before you go to sleep.",
    "A small brown dog was waiting patiently outside the grocery store.",
    "The museum opened a new exhibition about ancient sailing ships.",
    "We walked along the river until the path turned into a narrow bridge.",
    "The teacher asked the students to read the first chapter quietly.",
    "Heavy rain flooded the streets and closed the market for the day.",
    "He repaired the broken chair with glue and a few small nails.",
    "The children built a castle out of sand near the edge of the water.",
    "Our friends invited us to dinner on the terrace last weekend.",
    "The mountain road was covered with snow for most of the winter.",
    "She learned to play the violin by playing a little every day.",
    "The farmer sold apples, pears and honey at the weekly market.",
    "A gentle wind moved the tall grass across the empty field.",
    "The library will stay open late while the students prepare for exams.",
    "My grandfather told stories about the years he spent working at sea.",
    "The orchestra played a quiet song as the audience took their seats.",
    "Bright lanterns were hung along the street for the summer festival.",
    "The cat slept on the warm stones beside the kitchen door.",
    "They painted the fence white and planted roses along the path.",
    "The pilot announced that the plane would land a little early.",
    "Clear water flowed from the spring into a wide stone basin.",
    "The baker wakes up long before dawn to prepare the dough.",
    "An owl called softly from the dark branches of the oak tree.",
    "The students carried their heavy books across the busy square.",
    "We watched the fishing boats return to the port at dusk.",
    "The doctor advised him to rest and drink plenty of water.",
    "Thick fog rolled in from the sea and covered the whole town.",
    "The gardener trimmed the hedges and swept the fallen leaves.",
    "Her warm winter coat was made of soft green wool.",
    "The bridge was closed while workers replaced the old wooden planks.",
    "At the end of the day the shop owner counted the coins in the drawer.",
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(
    sentences: Sequence[str],
    out_path: Path,
    pause_s: float = 0.8,
    voice: str = "en-us",
    speed: int = DEFAULT_SPEED,
) -> Path:
    """Speak `sentences` with espeak-ng, `pause_s` of silence between them; write a 16 kHz wav.

    The wav is mono, 16-bit, 16 kHz, the rate Whisper's front end expects, so no test
    depends on a resampler of its own. Deterministic for fixed inputs and espeak-ng version.
    """
    if not sentences:
        raise DwkitError("synthesize: no sentences to speak")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DwkitError("espeak-ng is not installed; install it (Debian/Ubuntu: apt-get install espeak-ng)")
    pause = np.zeros(int(round(pause_s * ESPEAK_RATE)), dtype=np.int16)
    pieces: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="dwkit-speech-") as tmp:
        for index, sentence in enumerate(sentences):
            wav_path = Path(tmp) / f"{index}.wav"
            command = [
                exe,
                "-v",
                voice,
                "-s",
                str(speed),
                "-z",
                "-w",
                str(wav_path),
                "--",
                sentence,
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not wav_path.is_file():
                raise DwkitError(f"espeak-ng failed on {sentence!r}: {result.stderr.strip()}")
            samples, rate = _read_wav(wav_path)
            if rate != ESPEAK_RATE:
                raise DwkitError(f"espeak-ng wrote {rate} Hz audio, expected {ESPEAK_RATE}")
            if index:
                pieces.append(pause)
            pieces.append(samples)
    audio = resample_int16(np.concatenate(pieces), ESPEAK_RATE, SAMPLE_RATE)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(out_path, audio, SAMPLE_RATE)
    return out_path


def cached_speech(
    sentences: Sequence[str],
    cache_dir: Path,
    pause_s: float = 0.8,
    voice: str = "en-us",
    speed: int = DEFAULT_SPEED,
) -> Path:
    """`synthesize` into `cache_dir`, keyed by the inputs and espeak-ng's version."""
    key = hashlib.sha256(
        repr((list(sentences), pause_s, voice, speed, _espeak_version(), SAMPLE_RATE)).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir) / f"speech-{key}.wav"
    if path.is_file():
        return path
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    synthesize(sentences, partial, pause_s=pause_s, voice=voice, speed=speed)
    partial.replace(path)
    return path


def resample_int16(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono int16 audio with PyAV's (libswresample) resampler."""
    import av

    if rate_in == rate_out:
        return samples
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_in
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono wav (as `synthesize` writes) as float32 samples in [-1, 1)."""
    samples, rate = _read_wav(Path(path))
    if rate != SAMPLE_RATE:
        raise DwkitError(f"{path}: {rate} Hz audio, expected {SAMPLE_RATE}")
    return samples.astype(np.float32) / 32768.0


def _espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "missing"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise DwkitError(f"{path}: expected 16-bit mono audio")
        rate = handle.getframerate()
        data = handle.readframes(handle.getnframes())
    return np.frombuffer(data, dtype="<i2").copy(), rate


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
