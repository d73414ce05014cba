"""The Backend contract: a backend only encodes audio features and decodes tokens.

Everything else (audio, features, tokenizer, logit rules, decoders, long-form) lives in
`dwkit` and is shared, so two backends can only differ in numerics. Backends with a native
generate (CTranslate2) map `DecodeOptions` onto it; the others implement `StepBackend`'s
three small methods and inherit generation from the shared decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.errors import ModelError
from dwkit.model_info import ModelInfo


@dataclass
class RuntimeConfig:
    """How to run a backend: where, at which precision, with how many threads."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:1"
    precision: str | None = None  # the format's own name; None = the model's own precision
    threads: int = 0  # intra-op threads; 0 = the library's default
    inter_threads: int = 1
    batch_size: int = 8
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific settings
    # An encoder/decoder pair's side loads only the half it runs ("encoder" / "decoder", see
    # runtimes/pair.py) where its library allows; None: the whole model.
    part: str | None = None


PARTS = ("encoder", "decoder")


def check_part(part: str | None) -> None:
    if part is not None and part not in PARTS:
        raise ModelError(
            f"RuntimeConfig.part {part!r}: use {' or '.join(PARTS)}, or None for the whole model"
        )


@dataclass
class EncoderOutput:
    """Encoder states in whatever form the backend keeps them (tensor, StorageView, array)."""

    data: Any
    batch_size: int


@runtime_checkable
class Backend(Protocol):
    """What decoding needs: encode features, decode tokens after prompts, detect the language.

    A backend is created by its declaration's `backend_class.from_model_dir(model_dir,
    RuntimeConfig)` (see runtimes/declaration.py). Everything else (features, tokenizer,
    logit rules, long-form) is shared, so this is the whole surface a backend implements;
    step-by-step backends implement `StepBackend`'s three methods instead of `generate`.
    """

    name: str
    info: ModelInfo

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        """mel: float32 [batch, n_mels, 3000] -> encoder states."""
        ...

    def generate(self, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions) -> list[Hypothesis]:
        """One hypothesis per batch item, decoded after its prompt tokens."""
        ...

    def detect_language(self, enc: EncoderOutput) -> list[dict[str, float]]:
        """Per batch item, language code -> probability."""
        ...

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        """The encoder states of `rows` only (temperature fallback re-decodes a subset)."""
        ...

    def close(self) -> None:
        """Free what the backend holds outside Python's memory (native contexts), now."""
        ...


@runtime_checkable
class ParityProbe(Protocol):
    """Optional: the raw numbers the parity gate compares (a backend without them, such as
    whisper.cpp, which exposes no encoder output, is compared on tokens and transcripts)."""

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        """Encoder states as float32 numpy [batch, frames, d_model]."""
        ...

    def next_token_logits(self, enc: EncoderOutput, prompts: list[list[int]]) -> np.ndarray:
        """Raw logits [batch, vocab] for the token after each prompt (no rules)."""
        ...


@dataclass
class TokenAlignment:
    """Where the text tokens of one window sit in its audio (word timestamps are built on it).

    `text_indices`/`time_indices` are the monotonic DTW path over the alignment heads'
    cross-attention (token index into the window's text tokens, encoder frame of 20 ms);
    `token_probs[i]` is the probability the model gave text token i (teacher-forced).
    """

    text_indices: np.ndarray  # int64 [path length]
    time_indices: np.ndarray  # int64 [path length]
    token_probs: list[float]


@runtime_checkable
class Aligner(Protocol):
    """What word timestamps need from a backend. StepBackend implements it from
    `cross_attentions` plus the shared DTW (dwkit.alignment); a backend with a native
    aligner (CTranslate2's Whisper.align) overrides `align` itself."""

    def align(
        self,
        enc: EncoderOutput,
        prompts: list[list[int]],
        texts: list[list[int]],
        num_frames: list[int],
        heads: list[tuple[int, int]],
    ) -> list[TokenAlignment]:
        """Per batch row: align `texts[i]` (decoded tokens, no end-of-text) after `prompts[i]`
        over the first `num_frames[i]` encoder frames, using the (decoder layer, head) pairs."""
        ...


class StepBackend:
    """Base for backends that expose one decoder step; generation comes from dwkit.decoding.

    Subclasses implement `encode`, `start` (a fresh decoder cache for a batch) and `step`.
    """

    name: str
    info: ModelInfo

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        raise NotImplementedError

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        raise NotImplementedError

    def start(self, enc: EncoderOutput, batch_index: np.ndarray) -> Any:
        """A fresh decoder cache for rows `batch_index` of `enc` (rows may repeat, for beams)."""
        raise NotImplementedError

    def step(self, tokens: np.ndarray, cache: Any) -> np.ndarray:
        """Feed tokens [batch, new] (after the cached ones); return float32 logits [batch, new, vocab]."""
        raise NotImplementedError

    def reorder(self, cache: Any, index: np.ndarray) -> Any:
        """Select/reorder cache rows (beam search); subclasses with batched caches override."""
        raise NotImplementedError(f"{self.name} backend does not support beam search")

    def truncate(self, cache: Any, length: int) -> Any | None:
        """Optional: `cache` cut back to its first `length` positions (speculative decoding
        rolls back rejected draft tokens). None: not supported here; the speculative decoder
        then rebuilds the cache from the kept tokens (correct, slower)."""
        return None

    def cross_attentions(
        self, enc: EncoderOutput, row: int, tokens: list[int], heads: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-force `tokens` (prompt + text + end-of-text) for batch row `row` in one pass;
        return (cross-attention weights float32 [len(heads), len(tokens), encoder frames],
        softmax-normalised, one matrix per (decoder layer, head); logits float32
        [len(tokens), vocab]). What word timestamps are computed from."""
        raise ModelError(
            f"the {self.name} backend cannot report cross-attention weights, which word timestamps need"
        )

    def align(
        self,
        enc: EncoderOutput,
        prompts: list[list[int]],
        texts: list[list[int]],
        num_frames: list[int],
        heads: list[tuple[int, int]],
    ) -> list[TokenAlignment]:
        """The Aligner contract from `cross_attentions` and the shared DTW (dwkit.alignment).

        `prompts[i]` ends with <|notimestamps|> (OpenAI's alignment prompt); one teacher-forced
        pass per row over prompt + text + end-of-text, keeping the rows that predict the text
        tokens and end-of-text (the last prompt row onwards).
        """
        from dwkit.alignment import alignment_matrix, dtw, text_token_probs

        out = []
        for row, (prompt, text, frames) in enumerate(zip(prompts, texts, num_frames)):
            weights, logits = self.cross_attentions(enc, row, [*prompt, *text, self.info.eot], heads)
            first = len(prompt) - 1
            matrix = alignment_matrix(weights[:, first : first + len(text) + 1], frames)
            text_indices, time_indices = dtw(-matrix)
            probs = text_token_probs(logits[first:], text, self.info.eot)
            out.append(TokenAlignment(text_indices, time_indices, probs))
        return out

    def encoder_digest(self) -> str | None:
        """Optional: a digest of the encoder's weights, dtype and device; two backends with
        equal digests produce interchangeable EncoderOutputs (a draft then reuses the main
        model's). None: unknown, so a draft runs its own encoder."""
        return None

    def close(self) -> None:
        """Nothing to free by default: torch and onnxruntime objects go with the backend."""

    def generate(self, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions) -> list[Hypothesis]:
        from dwkit.decoding.search import decode

        return decode(self, enc, prompts, opts)

    def detect_language(self, enc: EncoderOutput) -> list[dict[str, float]]:
        from dwkit.decoding.search import detect_language

        return detect_language(self, enc)

    def next_token_logits(self, enc: EncoderOutput, prompts: list[list[int]]) -> np.ndarray:
        """Raw logits [batch, vocab] for the token after each prompt (no rules): one pass each."""
        rows = []
        for i, prompt in enumerate(prompts):
            cache = self.start(enc, np.array([i], dtype=np.int64))
            rows.append(self.step(np.array([prompt], dtype=np.int64), cache)[0, -1])
        return np.stack(rows).astype(np.float32)


def check_mel(mel: np.ndarray, info: ModelInfo) -> None:
    """Refuse features that do not fit the model, with the fix, before any runtime sees them."""
    if mel.ndim != 3 or mel.shape[1] != info.n_mels:
        raise ModelError(
            f"mel features of shape {tuple(mel.shape)} do not fit this model "
            f"(it expects [batch, {info.n_mels}, 3000]: n_mels={info.n_mels})"
        )
