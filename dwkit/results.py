"""Transcription results, the same for every backend and mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
        return asdict(self)
