"""Long-form options: distil-whisper's recommended defaults, every one overridable."""

from __future__ import annotations

from dataclasses import dataclass, field

from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError

MODES = ("sequential", "chunked")
TASKS = ("transcribe", "translate")


@dataclass
class LongformOptions:
    """How to transcribe a recording of any length.

    sequential: OpenAI's sliding 30 s window with timestamps, temperature fallback and
    no-speech skip, as transformers' long-form `generate` runs it. chunked: overlapping
    `chunk_length_s` chunks with `stride_length_s` on each side, batched, merged on the
    longest common token sequence, as transformers' ASR pipeline runs it.
    """

    mode: str = "sequential"
    language: str | None = None  # None: detect (multilingual models)
    task: str = "transcribe"
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 1.35
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_prev_tokens: bool = False
    chunk_length_s: float = 25.0
    stride_length_s: float | None = None  # None: chunk_length_s / 6 on each side
    batch_size: int = 8
    return_timestamps: bool = True  # chunked mode only: sequential always predicts timestamps
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r}: choose one of {', '.join(TASKS)}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ConfigError("temperatures must be a non-empty list of values >= 0")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if not 0 < self.chunk_length_s <= 30:
            raise ConfigError("chunk_length_s must be in (0, 30] seconds")
        if 2 * self.stride_s >= self.chunk_length_s:
            raise ConfigError("stride_length_s must be less than half of chunk_length_s")

    @property
    def stride_s(self) -> float:
        return self.chunk_length_s / 6 if self.stride_length_s is None else self.stride_length_s
