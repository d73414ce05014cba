"""The audio of a gate run: given files, or the built-in speech (demo.flac and espeak-ng)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from dwkit.errors import ConfigError

# The built-in long clip: demo.flac, a pause, then these of dwkit.speech.SENTENCES (~60 s).
BUILTIN_SENTENCES = slice(20, 30)
BUILTIN_PAUSE_S = 1.0


@dataclass
class Clip:
    """Audio both sides transcribe; `spoken` is its known text, when there is one."""

    name: str
    samples: np.ndarray
    spoken: str | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / 16000


@dataclass
class AudioSet:
    """The clips of a gate run: `short` for the short mode and the numerics (their first
    30 s), `long` for the sequential and chunked modes."""

    short: list[Clip]
    long: list[Clip]

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> AudioSet:
        """The same files for every mode (short mode takes the first 30 s of each)."""
        from dwkit.audio import load_audio

        clips = [Clip(str(path), load_audio(str(path))) for path in paths]
        if not clips:
            raise ConfigError("no audio files given")
        return cls(clips, clips)

    @classmethod
    def builtin(cls, cache_dir: Path | None = None) -> AudioSet:
        """demo.flac (15 s) for the short mode; for long-form, demo.flac, a pause and ten more
        sentences spoken by espeak-ng (~60 s, three windows), or without espeak-ng demo.flac
        four times with pauses. The sentences are ones the bundled tiny.en transcribes
        correctly in both long-form modes, so the baseline is right where candidates are checked.
        """
        from dwkit.audio import load_audio
        from dwkit.bundled import default_cache_dir
        from dwkit.speech import SENTENCES, cached_speech, espeak_available, read_wav

        data = files("dwkit") / "data"
        demo = load_audio(str(data / "demo.flac"))
        demo_text = (data / "demo.txt").read_text(encoding="utf-8").strip()
        pause = np.zeros(int(BUILTIN_PAUSE_S * 16000), dtype=np.float32)
        if espeak_available():
            sentences = list(SENTENCES[BUILTIN_SENTENCES])
            cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            extra = read_wav(cached_speech(sentences, cache / "speech"))
            pieces, texts, name = (
                [demo, pause, extra],
                [demo_text, *sentences],
                "built-in long (demo.flac + espeak-ng)",
            )
        else:
            pieces, texts = [demo, pause, demo, pause, demo, pause, demo], [demo_text] * 4
            name = "built-in long (demo.flac x4)"
        long_clip = Clip(name, np.concatenate(pieces).astype(np.float32), " ".join(texts))
        return cls([Clip("built-in short (demo.flac)", demo, demo_text)], [long_clip])

    def for_mode(self, mode: str) -> list[Clip]:
        return self.short if mode == "short" else self.long
