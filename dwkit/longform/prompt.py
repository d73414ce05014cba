"""The decoder prompt: start-of-transcript, language, task, and optional timestamps off."""

from __future__ import annotations

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


def detect_languages(backend, enc) -> list[str]:  # type: ignore[no-untyped-def]
    """The most likely language code per batch row."""
    return [max(probs, key=probs.get) for probs in backend.detect_language(enc)]
