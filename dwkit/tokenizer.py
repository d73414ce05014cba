"""The one tokenizer: the model's own tokenizer.json through `tokenizers`.

Decoding matches transformers' WhisperTokenizer(Fast).decode(skip_special_tokens=True):
special and timestamp tokens are dropped, and `clean_up_tokenization_spaces` follows the
model's tokenizer_config.json, so our transcripts equal transformers' character for character.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dwkit.errors import ConfigError, ModelError
from dwkit.manifest import read_json_object
from dwkit.model_info import TIME_PRECISION, ModelInfo

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

_CLEANUPS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


class Tokenizer:
    """Text <-> ids for one model, plus the special-token facts the decoders need."""

    def __init__(self, tokenizer_json: Path, info: ModelInfo, clean_up_spaces: bool = False):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(tokenizer_json))
        except Exception as exc:
            raise ModelError(f"{tokenizer_json}: unreadable tokenizer ({exc})") from exc
        self.info = info
        self.clean_up_spaces = clean_up_spaces

    @classmethod
    def from_json(cls, data: dict[str, Any], info: ModelInfo, clean_up_spaces: bool = False) -> Tokenizer:
        """A tokenizer.json held in memory (built from a whisper.cpp file's vocabulary)."""
        from tokenizers import Tokenizer as HFTokenizer

        tokenizer = cls.__new__(cls)
        tokenizer._tok = HFTokenizer.from_str(json.dumps(data))
        tokenizer.info = info
        tokenizer.clean_up_spaces = clean_up_spaces
        return tokenizer

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, info: ModelInfo | None = None) -> Tokenizer:
        model_dir = Path(model_dir)
        info = info or ModelInfo.from_model_dir(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            from dwkit import foreign

            built = foreign.tokenizer_json(model_dir)  # a whisper.cpp file carries its vocabulary
            if built is not None:
                return cls.from_json(built, info)
            raise ModelError(f"{path}: missing (the model's tokenizer belongs beside its weights)")
        clean = False
        config = model_dir / "tokenizer_config.json"
        if config.is_file():
            clean = bool(read_json_object(config).get("clean_up_tokenization_spaces", False))
        return cls(path, info, clean_up_spaces=clean)

    def encode(self, text: str) -> list[int]:
        """Plain text ids (no special tokens), e.g. for an initial prompt."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def text_tokens(self, text: str, what: str) -> list[int]:
        """Ids of user text given to the decoder (a prompt, a prefix, hotwords): with one leading
        space, as faster-whisper and transformers' `get_prompt_ids` encode it; text that spells a
        special token (`<|endoftext|>`) is refused, as transformers refuses it."""
        tokens = self.encode(" " + text.strip())
        special = next((t for t in tokens if not self.is_text(t)), None)
        if special is not None:
            raise ConfigError(
                f"{what}: the text contains the special token {self._tok.id_to_token(special)}; remove it"
            )
        return tokens

    def is_text(self, token: int) -> bool:
        """Every id from end-of-text upwards is a special or a timestamp token."""
        return token < self.info.eot

    def decode(self, tokens: list[int]) -> str:
        """Text of `tokens`, dropping special and timestamp tokens."""
        text = self._tok.decode([t for t in tokens if self.is_text(t)], skip_special_tokens=False)
        if self.clean_up_spaces:
            for before, after in _CLEANUPS:
                text = text.replace(before, after)
        return text

    def decode_with_timestamps(self, tokens: list[int]) -> str:
        """Text with `<|t.tt|>` markers, for debugging and logs."""
        out, run = [], []
        for token in tokens:
            if token >= self.info.timestamp_begin:
                out.append(self.decode(run))
                run = []
                out.append(f"<|{(token - self.info.timestamp_begin) * TIME_PRECISION:.2f}|>")
            else:
                run.append(token)
        out.append(self.decode(run))
        return "".join(out)

    def language_token(self, language: str) -> int:
        """Token id of a language given as a code ("en") or a name ("english")."""
        code = language.lower()
        if code not in LANGUAGES:
            by_name = {name: c for c, name in LANGUAGES.items()}
            code = by_name.get(code, code)
        token = self.info.lang_to_id.get(f"<|{code}|>")
        if token is None:
            valid = ", ".join(self.info.language_codes) or "none (English-only model)"
            raise ModelError(f"language {language!r} is not supported by this model; valid: {valid}")
        return token

    def language_of(self, token: int) -> str | None:
        for name, token_id in self.info.lang_to_id.items():
            if token_id == token:
                return name[2:-2]
        return None
