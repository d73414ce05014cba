"""How each side of the gate transcribes: the shared long-form engine on the backend,
with every decoded window's tokens recorded, so levels 2 and 3 come from one run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dwkit.parity.audio import Clip


class TokenRecorder:
    """A backend that also keeps the tokens of every hypothesis it generates, in order."""

    def __init__(self, backend: Any):
        self._backend = backend
        self.windows: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def generate(self, enc: Any, prompts: list[list[int]], opts: Any) -> list[Any]:
        hypotheses = self._backend.generate(enc, prompts, opts)
        self.windows.extend(list(h.tokens) for h in hypotheses)
        return hypotheses


@dataclass
class ModeRun:
    """One backend's transcription of every clip in one mode."""

    transcripts: list[Any]  # dwkit.results.Transcript per clip
    windows: list[list[list[int]]]  # per clip, the tokens of each decoded window
    seconds: float


def no_timestamps_prompt(info: Any) -> list[int]:
    """The prompt dwkit.compare uses: <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>."""
    prompt = [info.sot]
    if info.multilingual and info.transcribe is not None:
        prompt += [info.lang_to_id.get("<|en|>", next(iter(info.lang_to_id.values()))), info.transcribe]
    return prompt + [info.no_timestamps]


def transcribe_clips(backend: Any, tokenizer: Any, options: Any, clips: Sequence[Clip], mode: str) -> ModeRun:
    """Every clip through the engine with `options` (LongformOptions); short mode takes the
    first 30 s of each."""
    from dwkit.features import N_SAMPLES
    from dwkit.transcriber import Transcriber

    recorder = TokenRecorder(backend)
    transcriber = Transcriber(recorder, tokenizer, options)  # type: ignore[arg-type]
    transcripts, windows = [], []
    started = time.perf_counter()
    for clip in clips:  # one at a time: window lists stay aligned per clip
        recorder.windows = []
        samples = clip.samples[:N_SAMPLES] if mode == "short" else clip.samples
        transcripts.append(transcriber.transcribe(samples))
        windows.append(recorder.windows)
    return ModeRun(transcripts, windows, time.perf_counter() - started)
