"""Write a complete transformers Whisper checkpoint from weights plus a tokenizer.

Shared by every producer of transformers checkpoints (the CTranslate2 importer, the seeded
random models of `dwkit.synthetic`), so they agree on the side files: config.json,
generation_config.json, the tokenizer files, preprocessor_config.json and the manifest.

The special-token facts come from the tokenizer itself (`WhisperVocab.from_tokenizer_json`),
never from hard-coded ids, so English-only (eot 50256), multilingual (eot 50257) and
large-v3 (`<|yue|>` inserted, 51866 tokens) vocabularies are all described correctly.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.constants import SAMPLE_RATE
from dwkit.converters.base import ConversionResult, atomic_output_dir, library_versions
from dwkit.errors import ConversionError
from dwkit.manifest import MANIFEST_VERSION, weights_checksum, write_manifest
from dwkit.model_info import TIME_PRECISION, ModelInfo

# 0.00 .. 30.00 s in 20 ms steps.
N_TIMESTAMP_TOKENS = 1501
TIMESTAMP_RE = re.compile(r"^<\|\d+\.\d\d\|>$")
LANGUAGE_RE = re.compile(r"^<\|[a-z]{2,3}\|>$")
# OpenAI's rule: English-only vocabularies have 51864 tokens, multilingual ones 51865 or more.
MULTILINGUAL_MIN_VOCAB = 51865

WEIGHTS_NAME = "model.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


@dataclass(frozen=True)
class WhisperVocab:
    """The special token ids of one Whisper vocabulary, read from its tokenizer.json."""

    vocab_size: int
    eot: int
    sot: int
    languages: dict[str, int]  # "<|en|>" -> id, in id order
    translate: int
    transcribe: int
    sot_lm: int
    sot_prev: int
    no_speech: int  # <|nospeech|>, or <|nocaptions|> in vocabularies before large-v3
    no_timestamps: int

    @property
    def multilingual(self) -> bool:
        return self.vocab_size >= MULTILINGUAL_MIN_VOCAB

    @classmethod
    def from_tokenizer_json(cls, tokenizer: Mapping[str, Any]) -> WhisperVocab:
        ids = {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}

        def need(*names: str) -> int:
            for name in names:
                if name in ids:
                    return ids[name]
            raise ConversionError(f"tokenizer.json has no {names[0]} token (not a Whisper tokenizer)")

        eot, sot = need("<|endoftext|>"), need("<|startoftranscript|>")
        translate = need("<|translate|>")
        languages = {
            token: i
            for token, i in sorted(ids.items(), key=lambda kv: kv[1])
            if sot < i < translate and LANGUAGE_RE.match(token)
        }
        no_timestamps = need("<|notimestamps|>")
        return cls(
            # With the timestamp tokens, which older tokenizer.json files lack.
            vocab_size=no_timestamps + 1 + N_TIMESTAMP_TOKENS,
            eot=eot,
            sot=sot,
            languages=languages,
            translate=translate,
            transcribe=need("<|transcribe|>"),
            sot_lm=need("<|startoflm|>"),
            sot_prev=need("<|startofprev|>"),
            no_speech=need("<|nospeech|>", "<|nocaptions|>"),
            no_timestamps=no_timestamps,
        )


def fix_tokenizer_json(tokenizer: Mapping[str, Any], vocab_size: int) -> dict[str, Any]:
    """Return a tokenizer.json transformers reads the Whisper way, with exactly `vocab_size` tokens.

    transformers finds the first timestamp token as "last special token + 1", so the special
    tokens must be in id order and end with `<|notimestamps|>`, and the timestamp tokens must
    not be special. Older tokenizer.json files lack the 1501 timestamp tokens: append them.
    """
    tok = copy.deepcopy(dict(tokenizer))
    added = sorted(tok.get("added_tokens", []), key=lambda t: t["id"])
    vocab = WhisperVocab.from_tokenizer_json({**tok, "added_tokens": added})
    specials, timestamps, others = [], [], []
    for token in added:
        if TIMESTAMP_RE.match(token["content"]):
            timestamps.append(token)
        elif token["id"] <= vocab.no_timestamps:
            specials.append({**token, "special": True, "normalized": False})
        else:
            others.append(token)
    if others:
        names = ", ".join(t["content"] for t in others[:3])
        raise ConversionError(
            f"tokenizer.json has tokens after <|notimestamps|> that are not timestamps: {names}"
        )
    first = vocab.no_timestamps + 1
    if not timestamps:
        timestamps = [_timestamp_token(first + i, i) for i in range(N_TIMESTAMP_TOKENS)]
    expected = [(first + i, f"<|{i * TIME_PRECISION:.2f}|>") for i in range(N_TIMESTAMP_TOKENS)]
    if [(t["id"], t["content"]) for t in timestamps] != expected:
        raise ConversionError(f"tokenizer.json timestamp tokens are not <|0.00|>..<|30.00|> from id {first}")
    tok["added_tokens"] = specials + [{**t, "special": False} for t in timestamps]
    size = first + N_TIMESTAMP_TOKENS
    if size != vocab_size:
        raise ConversionError(
            f"tokenizer has {size} tokens but the model's vocabulary has {vocab_size}; "
            "the tokenizer.json does not belong to these weights"
        )
    return tok


def _timestamp_token(token_id: int, index: int) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": f"<|{index * TIME_PRECISION:.2f}|>",
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": True,
        "special": False,
    }


def non_speech_tokens(tokenizer: Mapping[str, Any]) -> list[int]:
    """Token ids of symbols Whisper never emits for speech (OpenAI's `non_speech_tokens`).

    Used when a source carries no `suppress_tokens`; with the multilingual tokenizer it gives
    the same ids the released checkpoints list.
    """
    from tokenizers import Tokenizer

    bpe = Tokenizer.from_str(json.dumps(tokenizer))
    bpe.post_processor = None

    def encode(text: str) -> list[int]:
        return bpe.encode(text, add_special_tokens=False).ids

    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    miscellaneous = set("♩♪♫♬♭♮♯")
    result = {encode(" -")[0], encode(" '")[0]}
    for symbol in symbols + sorted(miscellaneous):
        for tokens in (encode(symbol), encode(" " + symbol)):
            if len(tokens) == 1 or symbol in miscellaneous:
                result.add(tokens[0])
    return sorted(result)


def default_suppress_tokens(tokenizer: Mapping[str, Any]) -> list[int]:
    """Non-speech symbols plus the task and context tokens, as the released configs have it."""
    vocab = WhisperVocab.from_tokenizer_json(tokenizer)
    tasks = [
        vocab.sot,
        vocab.translate,
        vocab.transcribe,
        vocab.sot_lm,
        vocab.sot_prev,
        vocab.no_speech,
    ]
    return sorted(set(non_speech_tokens(tokenizer)) | set(tasks))


def default_alignment_heads(decoder_layers: int, decoder_heads: int) -> list[list[int]]:
    """Every head of the second half of the decoder (what CTranslate2 assumes without a list)."""
    return [
        [layer, head] for layer in range(decoder_layers // 2, decoder_layers) for head in range(decoder_heads)
    ]


def generation_config_dict(
    vocab: WhisperVocab,
    *,
    max_length: int,
    suppress_tokens: list[int],
    begin_suppress_tokens: list[int] | None = None,
    alignment_heads: list[list[int]] | None = None,
) -> dict[str, Any]:
    """generation_config.json contents for transformers' Whisper `generate`.

    English-only models must not carry `lang_to_id`: its presence makes transformers run
    language detection.
    """
    gen: dict[str, Any] = {
        "alignment_heads": [list(map(int, h)) for h in alignment_heads or []],
        "begin_suppress_tokens": list(begin_suppress_tokens or [220, vocab.eot]),
        "bos_token_id": vocab.eot,
        "decoder_start_token_id": vocab.sot,
        "eos_token_id": vocab.eot,
        "pad_token_id": vocab.eot,
        "is_multilingual": vocab.multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": max_length,
        "no_timestamps_token_id": vocab.no_timestamps,
        "prev_sot_token_id": vocab.sot_prev,
        "return_timestamps": False,
        "suppress_tokens": sorted(int(t) for t in suppress_tokens),
    }
    if vocab.multilingual:
        gen["forced_decoder_ids"] = [[1, None], [2, vocab.transcribe]]
        gen["lang_to_id"] = dict(vocab.languages)
        gen["task_to_id"] = {"transcribe": vocab.transcribe, "translate": vocab.translate}
    return gen


@dataclass(frozen=True)
class WhisperDims:
    """The architecture numbers of config.json."""

    n_mels: int
    vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    n_audio_ctx: int = 1500
    n_text_ctx: int = 448


def whisper_config(dims: WhisperDims, vocab: WhisperVocab, tie_word_embeddings: bool = True) -> Any:
    """A transformers `WhisperConfig` for these dimensions and this vocabulary."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.n_mels,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_heads,
        decoder_attention_heads=dims.decoder_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.n_audio_ctx,
        max_target_positions=dims.n_text_ctx,
        pad_token_id=vocab.eot,
        bos_token_id=vocab.eot,
        eos_token_id=vocab.eot,
        decoder_start_token_id=vocab.sot,
        # Suppression lists live in generation_config.json only: in config.json too,
        # transformers warns on every generate that they override its defaults.
        begin_suppress_tokens=None,
        suppress_tokens=None,
        tie_word_embeddings=tie_word_embeddings,
        torch_dtype="float32",
        architectures=["WhisperForConditionalGeneration"],
    )


def write_tokenizer_files(tokenizer: Mapping[str, Any], out_dir: Path) -> list[str]:
    """Write tokenizer.json plus the files the slow `WhisperTokenizer` and `WhisperProcessor` need.

    `tokenizer` must already be fixed (`fix_tokenizer_json`). transformers writes the files
    itself so they are exactly what its loaders expect.
    """
    from transformers import WhisperTokenizerFast

    out_dir = Path(out_dir)
    staging = out_dir / ".tokenizer-source.json"
    staging.write_text(json.dumps(tokenizer, ensure_ascii=False))
    try:
        specials = [t["content"] for t in tokenizer["added_tokens"] if t.get("special")]
        fast = WhisperTokenizerFast(
            tokenizer_file=str(staging),
            additional_special_tokens=specials,
            pad_token="<|endoftext|>",
            model_max_length=1024,
            errors="replace",
        )
        fast.save_pretrained(str(out_dir))
    finally:
        staging.unlink(missing_ok=True)
    return [name for name in TOKENIZER_FILES if (out_dir / name).is_file()]


def write_preprocessor_config(out_dir: Path, n_mels: int) -> None:
    """preprocessor_config.json: the log-mel front end with the model's number of mel bins."""
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE).save_pretrained(str(out_dir))


def write_hf_checkpoint(
    out_dir: Path,
    state_dict: Mapping[str, np.ndarray],
    dims: WhisperDims,
    tokenizer: Mapping[str, Any],
    *,
    suppress_tokens: list[int] | None = None,
    begin_suppress_tokens: list[int] | None = None,
    alignment_heads: list[list[int]] | None = None,
    tie_word_embeddings: bool = True,
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write weights, configs, tokenizer and the `dwkit.json` manifest into `out_dir`.

    `out_dir` is normally the temporary directory of `atomic_output_dir`. `state_dict` holds
    transformers' parameter names (float32 arrays; the tied `proj_out.weight` may be left out).
    `manifest` adds keys (source, validation, ...) to the manifest. Returns the manifest.
    """
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    tokenizer = fix_tokenizer_json(tokenizer, dims.vocab_size)
    vocab = WhisperVocab.from_tokenizer_json(tokenizer)
    if suppress_tokens is None:
        suppress_tokens = default_suppress_tokens(tokenizer)
    if alignment_heads is None:
        alignment_heads = default_alignment_heads(dims.decoder_layers, dims.decoder_heads)
    gen = generation_config_dict(
        vocab,
        max_length=dims.n_text_ctx,
        suppress_tokens=suppress_tokens,
        begin_suppress_tokens=begin_suppress_tokens,
        alignment_heads=alignment_heads,
    )
    tensors = {
        name: np.ascontiguousarray(value, dtype=np.float32)
        for name, value in state_dict.items()
        if not (tie_word_embeddings and name == "proj_out.weight")
    }
    save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    whisper_config(dims, vocab, tie_word_embeddings).to_json_file(str(out_dir / "config.json"))
    _write_generation_config(out_dir, gen)
    write_preprocessor_config(out_dir, dims.n_mels)
    write_tokenizer_files(tokenizer, out_dir)
    data = {
        "format": "hf",
        "precision": "fp32",
        **dict(manifest or {}),
        "weights_checksum": weights_checksum(out_dir),
        "library_versions": library_versions("transformers", "tokenizers", "safetensors", "numpy"),
        "model_info": ModelInfo.from_hf_dir(out_dir).to_dict(),
    }
    write_manifest(out_dir, data)
    return {"manifest_version": MANIFEST_VERSION, **data}


def write_imported_checkpoint(
    out_dir: Path,
    state_dict: Mapping[str, np.ndarray],
    dims: WhisperDims,
    tokenizer: Mapping[str, Any],
    *,
    overwrite: bool = False,
    **options: Any,
) -> ConversionResult:
    """`write_hf_checkpoint` into `out_dir`, atomically: the importers' (ct2, ggml) output."""
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        manifest = write_hf_checkpoint(tmp, state_dict, dims, tokenizer, **options)
        files = sorted(p.name for p in tmp.iterdir())
    return ConversionResult(
        out_dir=Path(out_dir).expanduser().resolve(),
        fmt="hf",
        precision="fp32",
        manifest=manifest,
        files=files,
    )


def _write_generation_config(out_dir: Path, gen: Mapping[str, Any]) -> None:
    from transformers import GenerationConfig

    # Going through GenerationConfig stamps transformers_version and proves it loads.
    GenerationConfig.from_dict(dict(gen)).save_pretrained(str(out_dir))
