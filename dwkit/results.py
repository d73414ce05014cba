"""Transcription results, the same for every backend and mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One word on the recording's timeline (seconds), as faster-whisper's `Word`.

    `word` keeps its leading space, so joining a segment's words gives its text.
    `probability`: the mean of its tokens' probabilities (OpenAI's and faster-whisper's).
    """

    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None
    compression_ratio: float | None = None
    words: list[Word] | None = None  # only with word timestamps on


@dataclass
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: list[Segment]
    mode: str = "sequential"
    backend: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Segments carry `words` only when word timestamps were asked for."""
        data = asdict(self)
        for segment in data["segments"]:
            if segment.get("words") is None:
                segment.pop("words", None)
        return data
