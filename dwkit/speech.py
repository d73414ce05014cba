"""Synthetic English speech with a known transcript, spoken by espeak-ng.

Tests, the demo and benchmarks need audio whose words are known: `synthesize` speaks
sentences one by one, joins them with silent pauses and writes a 16 kHz mono 16-bit wav.
`SENTENCES` is a built-in set of plain, distinct sentences (no numbers, no abbreviations, no
words spelt differently in British and American English), so the word error rate of a
transcript against them means something. Each was kept only if both bundled real models
(tiny.en and base) transcribe it alone word for word: espeak-ng's weak consonants make many
plain sentences come back wrong ("bread" as "red", "of" as "on", plurals lost).
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
    "My sister planted tomatoes and peppers in the garden behind the house.",
    "The train to the coast leaves from the northern platform.",
    "Heavy rain flooded the streets and closed the market for the day.",
    "The mountain road was covered with snow for most of the winter.",
    "Bright lanterns were hung along the street for the summer festival.",
    "They painted the fence white and planted roses along the path.",
    "Clear water flowed from the spring into a wide stone basin.",
    "The bridge was closed while workers replaced the old wooden planks.",
    "The old man sat on a wooden bench and watched the river.",
    "We waited at the station until the last train arrived.",
    "He forgot his umbrella and came home completely wet.",
    "The nurse smiled and told the child that everything was fine.",
    "She opened the door and invited the visitors inside.",
    "The farmer woke up early to feed the cows and the chickens.",
    "The room was silent except for the ticking of an old clock.",
    "The store was closed, so we went home without any milk.",
    "The river was so wide that we could hardly see the other side.",
    "The old castle on the hill is open to visitors in summer.",
    "Our flight was delayed because of the storm over the ocean.",
    "The painter mixed blue and yellow to make a bright green.",
    "The library is quiet in the morning when most students are still asleep.",
    "My grandmother makes the best apple cake in the whole village.",
    "The children were playing football in the garden until it started raining.",
    "The teacher wrote a difficult question on the board and waited for an answer.",
    "My friend is learning to cook Italian food at an evening class.",
    "The airport was crowded with families going on holiday.",
    "She walked into the room and turned on all the lights.",
    "Our holiday was wonderful, and we hope to return next summer.",
    "On Sunday morning the streets were empty and very quiet.",
    "The garden was full of flowers, and the bees were very busy.",
    "My brother and I walked to school together every morning.",
    "She looked out of the window and saw that it was snowing.",
    "The sky turned orange and red as the sun went down.",
    "The hospital is on the other side of town, near the park.",
    "The cook added salt and pepper and stirred the soup slowly.",
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
