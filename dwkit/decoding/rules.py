"""The logit rules, written once: every step-decoding backend uses these, in this order.

They reproduce transformers' Whisper logits processors (SuppressTokensAtBegin,
SuppressTokens, WhisperTimeStampLogitsProcessor, WhisperNoSpeechDetection), which follow
OpenAI's SuppressBlank, SuppressTokens and ApplyTimestampRules, so a backend that decodes
with them makes the same choices as transformers on the same logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dwkit.decoding.options import DecodeOptions
from dwkit.model_info import ModelInfo

NEG_INF = -np.inf


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def logsumexp(values: np.ndarray) -> np.ndarray:
    peak = values.max(axis=-1)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(values - safe[..., None]).sum(axis=-1))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sample_begin(prompt: Sequence[int], info: ModelInfo) -> int:
    """Where the decoded tokens begin: after <|startoftranscript|> and the special tokens that
    follow it (language, task, <|notimestamps|>). Text after those in a prompt is a forced prefix,
    which the rules count as decoded, as CTranslate2 does: `<|0.00|> The train` goes on as text."""
    prompt = list(prompt)
    end = prompt.index(info.sot) if info.sot in prompt else 0
    while end < len(prompt) and info.sot <= prompt[end] <= info.no_timestamps:
        end += 1
    return end


@dataclass
class LogitRules:
    """The rules for one decoding call; `sample_begin` is where the decoded tokens begin."""

    info: ModelInfo
    opts: DecodeOptions
    sample_begin: int

    def __post_init__(self) -> None:
        suppress = (
            self.info.suppress_tokens if self.opts.suppress_tokens is None else self.opts.suppress_tokens
        )
        self._suppress = np.array(sorted(set(suppress)), dtype=np.int64)
        self._begin_suppress = np.array(
            sorted(set(self.info.begin_suppress_tokens)) if self.opts.suppress_blank else [],
            dtype=np.int64,
        )
        index = self.opts.max_initial_timestamp_index
        self._max_initial = self.info.max_initial_timestamp_index if index is None else index

    def apply(self, tokens: np.ndarray, logits: np.ndarray) -> None:
        """Edit `logits` [batch, vocab] in place, given all tokens so far [batch, length]."""
        at_begin = tokens.shape[1] == self.sample_begin
        if at_begin and self._begin_suppress.size:
            logits[:, self._begin_suppress] = NEG_INF
        if self._suppress.size:
            logits[:, self._suppress] = NEG_INF
        if not self.opts.without_timestamps:
            self._timestamp_rules(tokens, logits, at_begin)

    def _timestamp_rules(self, tokens: np.ndarray, logits: np.ndarray, at_begin: bool) -> None:
        ts_begin, eot = self.info.timestamp_begin, self.info.eot
        logits[:, self.info.no_timestamps] = NEG_INF
        for k in range(tokens.shape[0]):
            sampled = tokens[k, self.sample_begin :]
            last_was_ts = len(sampled) >= 1 and sampled[-1] >= ts_begin
            penultimate_was_ts = len(sampled) < 2 or sampled[-2] >= ts_begin
            if last_was_ts:
                if penultimate_was_ts:  # a pair just closed: text must follow
                    logits[k, ts_begin:] = NEG_INF
                else:  # an opening timestamp: close it or end, no text
                    logits[k, :eot] = NEG_INF
            timestamps = sampled[sampled >= ts_begin]
            if timestamps.size:
                # timestamps never decrease; and never repeat <|0.00|> after a closed pair
                last = timestamps[-1] if (last_was_ts and not penultimate_was_ts) else timestamps[-1] + 1
                logits[k, ts_begin:last] = NEG_INF
        if at_begin:
            logits[:, :ts_begin] = NEG_INF
            if self._max_initial is not None:
                logits[:, ts_begin + self._max_initial + 1 :] = NEG_INF
        logprobs = log_softmax(logits.astype(np.float32))
        ts_mass = logsumexp(logprobs[:, ts_begin:])
        text_max = logprobs[:, :ts_begin].max(axis=-1)
        logits[ts_mass > text_max, :ts_begin] = NEG_INF


def no_speech_probs(prompt_logits: np.ndarray, sot_index: int, info: ModelInfo) -> np.ndarray:
    """P(<|nospeech|>) from the raw logits at the start-of-transcript position [batch]."""
    return softmax(prompt_logits[:, sot_index].astype(np.float32))[:, info.no_speech]
