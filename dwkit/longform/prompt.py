"""The decoder prompt: previous text, start-of-transcript, language, task, timestamps, prefix.

A window's prompt is `[<|startofprev|> hotwords history] [sot language task (notimestamps)]
[prefix]`, built as faster-whisper builds it (and, for the initial prompt with or without
condition_on_prev_tokens, as transformers' `generate(prompt_ids=...)` does):
- the initial prompt is previous text before the first window; with condition_on_prev_tokens
  it stays at the head of the history, whose last n_text_ctx // 2 - 1 tokens are kept (OpenAI's
  and transformers' cut, so an over-long prompt keeps its last tokens, documented, not refused);
- hotwords sit in the previous-text slot of every window that has no prefix (faster-whisper's
  rule), ahead of the history, which then keeps fewer tokens so the slot stays within its half;
- the prefix is forced after the start-of-transcript sequence of the first window (after a
  `<|0.00|>` in timestamp mode, as faster-whisper does); the backends treat it as already
  decoded text, so the timestamp rules see it and the window's tokens start with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from dwkit.errors import ConfigError
from dwkit.tokenizer import Tokenizer


def init_tokens(tokenizer: Tokenizer, language: str | None, task: str, timestamps: bool) -> list[int]:
    """[sot] for English-only models, [sot, language, task] for multilingual ones."""
    info = tokenizer.info
    tokens = [info.sot]
    if info.multilingual:
        if language is None:
            raise ConfigError("a multilingual model needs a language (or detection) before decoding")
        tokens.append(tokenizer.language_token(language))
        tokens.append(info.translate if task == "translate" else info.transcribe)
    elif task != "transcribe" or language not in (None, "en", "english"):
        raise ConfigError("this model is English-only: language and task cannot be set")
    if not timestamps:
        tokens.append(info.no_timestamps)
    return [t for t in tokens if t is not None]


def history_room(n_text_ctx: int) -> int:
    """Tokens of previous text a prompt may carry after <|startofprev|> (OpenAI: n_ctx // 2 - 1)."""
    return n_text_ctx // 2 - 1


def initial_prompt_tokens(tokenizer: Tokenizer, text: str | None) -> list[int]:
    """The initial prompt's ids, its last `history_room` tokens when it is longer."""
    if not text or not text.strip():
        return []
    tokens = tokenizer.text_tokens(text, "initial_prompt")
    return tokens[-history_room(tokenizer.info.n_text_ctx) :]


def hotword_tokens(tokenizer: Tokenizer, text: str | None) -> list[int]:
    """The hotwords' ids; refused when they leave no room in the previous-text slot."""
    if not text or not text.strip():
        return []
    tokens = tokenizer.text_tokens(text, "hotwords")
    _check_fits(tokens, history_room(tokenizer.info.n_text_ctx) - 1, "hotwords")
    return tokens


def prefix_tokens(tokenizer: Tokenizer, text: str | None, timestamps: bool) -> list[int]:
    """The forced start of the first window: `<|0.00|>` (timestamp mode) then the prefix's ids."""
    if not text or not text.strip():
        return []
    tokens = tokenizer.text_tokens(text, "prefix")
    _check_fits(tokens, history_room(tokenizer.info.n_text_ctx), "prefix")
    return ([tokenizer.info.timestamp_begin] if timestamps else []) + tokens


def previous_text(
    sot_prev: int, hotwords: Sequence[int], history: Sequence[int], n_text_ctx: int
) -> list[int]:
    """<|startofprev|>, the hotwords, then the last tokens of `history` that still fit."""
    room = history_room(n_text_ctx) - len(hotwords)
    return [sot_prev, *hotwords, *(history[len(history) - room :] if room > 0 else [])]


def choose_language(windows: Sequence[dict[str, float]], threshold: float) -> str:
    """faster-whisper's rule over per-window language probabilities, in audio order: the first
    window whose top language is more probable than `threshold` decides; else the language on top
    of most windows (the first such on a tie)."""
    votes: dict[str, int] = {}
    for probs in windows:
        top = max(probs, key=probs.__getitem__)
        if probs[top] > threshold:
            return top
        votes[top] = votes.get(top, 0) + 1
    if not votes:
        raise ConfigError("language detection needs at least one window of audio")
    return max(votes, key=votes.__getitem__)


def _check_fits(tokens: list[int], room: int, what: str) -> None:
    if len(tokens) > room:
        raise ConfigError(
            f"{what}: {len(tokens)} tokens, but at most {room} fit in the model's text context; shorten it"
        )
