"""Model files as the field's own tools ship them, run as they are (no dwkit.json).

- A faster-whisper / CTranslate2 directory: model.bin, CTranslate2's config.json
  (suppress_ids, suppress_ids_begin, alignment_heads, lang_ids), tokenizer.json, vocabulary.*
  and, for 128-mel models, preprocessor_config.json.
- A whisper.cpp model file (`ggml-*.bin`), alone or in a directory: its hparams and its
  vocabulary (the token bytes; whisper.cpp adds the special tokens itself).

Each is recognised by its own files and described from what it carries. The ModelInfo goes
through the same generation-config rules as dwkit's transformers import
(`converters/hf_files.py`), so one model reads the same whether it arrived as a transformers
checkpoint, a faster-whisper directory or a whisper.cpp file.
"""

from __future__ import annotations

import importlib
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from dwkit.errors import ConversionError, ModelError
from dwkit.manifest import read_json_object
from dwkit.model_info import ModelInfo
from dwkit.tokenizer import LANGUAGES

CT2_MODEL_FILE = "model.bin"
CT2_SPEC = b"WhisperSpec"
GGML_MAGIC = struct.pack("<i", 0x67676D6C)
# whisper.cpp's fixed token ids (whisper.cpp `whisper_vocab`): text tokens end at 50256
# (English-only) or 50257 (multilingual), and the special run follows.
ENGLISH_EOT = 50256
# n_vocab = 51765 + languages (+ 1 for multilingual vocabularies): 99 languages, 100 from large-v3.
BASE_VOCAB = 51765
MULTILINGUAL_MIN_VOCAB = 51865
# `dwconvert --from FORMAT --to hf`: the module:function that imports FORMAT as a transformers checkpoint.
IMPORTERS = {
    "ct2": "dwkit.converters.ct2_import:import_ct2",
    "ggml": "dwkit.converters.ggml_import:import_ggml",
    "onnx": "dwkit.converters.onnx_import:import_onnx",
}


# --- recognising -----------------------------------------------------------------------------


def is_ct2_dir(path: Path) -> bool:
    """A directory whose model.bin starts like a CTranslate2 Whisper model (version >= 2 header)."""
    model = Path(path) / CT2_MODEL_FILE
    if not model.is_file():
        return False
    with open(model, "rb") as handle:
        head = handle.read(6 + len(CT2_SPEC))
    if len(head) < 6 + len(CT2_SPEC):
        return False
    version, length = struct.unpack_from("<IH", head)
    return 2 <= version <= 6 and length == len(CT2_SPEC) + 1 and head[6:] == CT2_SPEC


def _is_ggml(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == GGML_MAGIC


def ggml_file(path: Path) -> Path | None:
    """The whisper.cpp model file `path` is, or the one its directory holds (None: neither)."""
    path = Path(path)
    if path.is_file():
        return path if _is_ggml(path) else None
    if not path.is_dir():
        return None
    found = sorted(p for p in path.glob("*.bin") if p.is_file() and _is_ggml(p))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ModelError(
            f"{path}: holds {len(found)} whisper.cpp model files ({names}); point --model at one of them"
        )
    return found[0] if found else None


def describe_layout(path: Path) -> str | None:
    """What `dwkit info` says a manifest-less model is, or None when it is no foreign layout."""
    found = ggml_file(path)
    if found is not None:
        return f"whisper.cpp model file {found.name} (no dwkit.json)"
    if is_ct2_dir(path):
        return "CTranslate2 / faster-whisper directory (no dwkit.json)"
    return None


def stored_precision(path: Path) -> str | None:
    """The precision a foreign model's weights are stored at, in its format's own names
    (ggml's type of the file; CTranslate2's quantization the weights were saved with)."""
    found = ggml_file(path)
    if found is not None:
        from dwkit.converters.ggml_format import FTYPES, QNT_VERSION_FACTOR, read_ggml

        ftype = read_ggml(found).hparams["ftype"] % QNT_VERSION_FACTOR
        return {v: k for k, v in FTYPES.items()}.get(ftype, f"ftype {ftype}")
    if not is_ct2_dir(path):
        return None
    from dwkit.converters.ct2_import import read_ct2_model

    model = read_ct2_model(Path(path) / CT2_MODEL_FILE, data=False)
    kinds = {str(v.dtype) for v in model.variables.values() if v.ndim >= 2}
    floats = sorted(kinds & {"float32", "float16"}) or ["float32"]
    if "int16" in kinds:
        return "int16"
    return f"int8_{floats[0]}" if "int8" in kinds else floats[0]


def as_transformers_checkpoint(path: Path, cache: Path) -> Path:
    """`path` itself unless it is a foreign layout; then the transformers checkpoint imported
    from it (`dwconvert --from ct2|ggml --to hf`), once per file version, under `cache/models`.

    For tools that need transformers' weights beside the model (`dwkit bench` runs the
    transformers baseline and converts the source to every backend it measures).
    """
    import hashlib

    from dwkit.bundled import cache_lock, code_digest
    from dwkit.manifest import read_manifest

    path = Path(path)
    if path.is_dir() and read_manifest(path):
        return path
    found = ggml_file(path)
    if found is not None:
        fmt = "ggml"
    elif is_ct2_dir(path):
        fmt, found = "ct2", path / CT2_MODEL_FILE
    else:
        return path
    module, function = IMPORTERS[fmt].split(":")
    importer = getattr(importlib.import_module(module), function)
    stat = found.stat()
    version = (
        str(found.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        code_digest(module, "dwkit.converters.hf_files"),
    )
    key = hashlib.sha256(repr(version).encode()).hexdigest()
    name = path.name if found.name == CT2_MODEL_FILE else found.stem
    out = Path(cache) / "models" / f"imported-{name}-{key[:12]}"
    with cache_lock(out.parent / f".{out.name}.lock"):
        if not (out.is_dir() and read_manifest(out)):
            importer(path, out, overwrite=True)
    return out


# --- describing --------------------------------------------------------------------------------


def model_info(path: Path) -> ModelInfo | None:
    """The ModelInfo of a foreign layout at `path`, or None when it is none."""
    found = ggml_file(path)
    if found is not None:
        return ggml_model_info(found)
    if is_ct2_dir(path):
        return ct2_model_info(path)
    return None


def tokenizer_json(path: Path) -> dict[str, Any] | None:
    """tokenizer.json contents of a whisper.cpp file (built from its vocabulary), else None."""
    found = ggml_file(path)
    return ggml_parts(found)[1] if found is not None else None


def ct2_model_info(model_dir: Path) -> ModelInfo:
    """A CTranslate2 directory: shapes from model.bin's header, suppression lists and alignment
    heads from CTranslate2's config.json (OpenAI's defaults without one), special tokens from
    tokenizer.json, mel bins from model.bin (checked against preprocessor_config.json)."""
    from dwkit.converters.ct2_import import ct2_dims, read_ct2_model

    model_dir = Path(model_dir)
    tokenizer_path = model_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelError(
            f"{tokenizer_path}: missing; a CTranslate2 / faster-whisper directory needs the model's "
            "tokenizer.json beside model.bin (ct2-transformers-converter --copy_files tokenizer.json)"
        )
    config_path = model_dir / "config.json"
    side = read_json_object(config_path) if config_path.is_file() else {}
    try:
        dims = ct2_dims(read_ct2_model(model_dir / CT2_MODEL_FILE, data=False), model_dir / CT2_MODEL_FILE)
    except ConversionError as exc:
        raise ModelError(str(exc)) from exc
    preprocessor = model_dir / "preprocessor_config.json"
    if preprocessor.is_file():
        feature_size = read_json_object(preprocessor).get("feature_size", dims.n_mels)
        if feature_size != dims.n_mels:
            raise ModelError(
                f"{preprocessor}: feature_size {feature_size} but model.bin takes {dims.n_mels} mel bins; "
                "the file belongs to another model"
            )
    return _describe(
        model_dir,
        dims,
        read_json_object(tokenizer_path),
        suppress=side.get("suppress_ids"),
        begin_suppress=side.get("suppress_ids_begin"),
        alignment_heads=side.get("alignment_heads"),
    )


def ggml_model_info(path: Path) -> ModelInfo:
    """A whisper.cpp file: shapes from its hparams, special tokens from whisper.cpp's own id
    rules, suppression lists from its vocabulary as OpenAI derives them."""
    dims, tokenizer = ggml_parts(Path(path))
    return _describe(path, dims, tokenizer)


def _describe(
    where: Path,
    dims: Any,
    tokenizer: dict[str, Any],
    *,
    suppress: list[int] | None = None,
    begin_suppress: list[int] | None = None,
    alignment_heads: list[list[int]] | None = None,
) -> ModelInfo:
    """ModelInfo through transformers' config keys and dwkit's generation-config rules."""
    from dwkit.converters.hf_files import (
        WhisperVocab,
        default_alignment_heads,
        default_suppress_tokens,
        generation_config_dict,
    )

    try:
        vocab = WhisperVocab.from_tokenizer_json(tokenizer)
        if vocab.vocab_size != dims.vocab_size:
            raise ConversionError(
                f"the tokenizer has {vocab.vocab_size} tokens (timestamps included) but the weights' "
                f"vocabulary has {dims.vocab_size}; the tokenizer.json belongs to another model"
            )
        heads = alignment_heads or default_alignment_heads(dims.decoder_layers, dims.decoder_heads)
        gen = generation_config_dict(
            vocab,
            max_length=dims.n_text_ctx,
            suppress_tokens=default_suppress_tokens(tokenizer) if suppress is None else suppress,
            begin_suppress_tokens=begin_suppress,
            alignment_heads=heads,
        )
    except ConversionError as exc:
        raise ModelError(f"{where}: {exc}") from exc
    config = {
        "num_mel_bins": dims.n_mels,
        "vocab_size": dims.vocab_size,
        "d_model": dims.d_model,
        "encoder_layers": dims.encoder_layers,
        "decoder_layers": dims.decoder_layers,
        "encoder_attention_heads": dims.encoder_heads,
        "decoder_attention_heads": dims.decoder_heads,
        "encoder_ffn_dim": dims.encoder_ffn_dim,
        "max_source_positions": dims.n_audio_ctx,
        "max_target_positions": dims.n_text_ctx,
    }
    return ModelInfo._from_hf_configs(config, gen)


# --- whisper.cpp vocabulary -> tokenizer.json ----------------------------------------------------


def ggml_parts(path: Path) -> tuple[Any, dict[str, Any]]:
    """(WhisperDims, tokenizer.json) of a whisper.cpp file."""
    stat = path.stat()
    return _ggml_parts_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _ggml_parts_cached(path: Path, size: int, mtime_ns: int) -> tuple[Any, dict[str, Any]]:
    """(WhisperDims, tokenizer.json) of a whisper.cpp file; cached per file version, since
    ModelInfo and the tokenizer both need them and deriving the merges takes a moment."""
    from dwkit.converters.ggml_format import read_ggml
    from dwkit.converters.hf_files import WhisperDims

    try:
        parsed = read_ggml(path)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable whisper.cpp model file ({exc})") from exc
    h = parsed.hparams
    if h["n_audio_state"] != h["n_text_state"]:
        raise ModelError(f"{path}: encoder width {h['n_audio_state']} != decoder width {h['n_text_state']}")
    dims = WhisperDims(
        n_mels=h["n_mels"],
        vocab_size=h["n_vocab"],
        d_model=h["n_audio_state"],
        encoder_layers=h["n_audio_layer"],
        decoder_layers=h["n_text_layer"],
        encoder_heads=h["n_audio_head"],
        decoder_heads=h["n_text_head"],
        # whisper.cpp hard-codes the feed-forward width as 4 * d_model.
        encoder_ffn_dim=4 * h["n_audio_state"],
        decoder_ffn_dim=4 * h["n_text_state"],
        n_audio_ctx=h["n_audio_ctx"],
        n_text_ctx=h["n_text_ctx"],
    )
    return dims, whisper_cpp_tokenizer(parsed.tokens, h["n_vocab"], path)


def whisper_cpp_tokens(n_vocab: int) -> list[str]:
    """The special tokens whisper.cpp appends after the text tokens, in id order (its
    `whisper_vocab` rules: one language token per slot, task and context tokens, notimestamps)."""
    multilingual = n_vocab >= MULTILINGUAL_MIN_VOCAB
    languages = n_vocab - BASE_VOCAB - int(multilingual)
    if not 0 < languages <= len(LANGUAGES):
        raise ModelError(f"n_vocab {n_vocab} is no Whisper vocabulary (51864, 51865 or 51866)")
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in list(LANGUAGES)[:languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        # large-v3 renamed it; transformers' tokenizers of older vocabularies keep the old name.
        "<|nospeech|>" if languages >= 100 else "<|nocaptions|>",
        "<|notimestamps|>",
    ]


def whisper_cpp_tokenizer(tokens: list[bytes], n_vocab: int, path: Path = Path("model")) -> dict[str, Any]:
    """A Whisper tokenizer.json (byte-level BPE) from a whisper.cpp file's vocabulary.

    whisper.cpp files carry each token's bytes but no BPE merges. Decoding needs only the
    bytes; encoding (prompts, the non-speech suppression list) needs merges. Whisper's
    vocabulary is tiktoken's, where a token's id is its merge rank, so the merges follow from
    the ranks: every split of a token into two tokens is a merge, ranked by the token it
    makes, exactly as transformers' `TikTokenConverter` rebuilds merges from a tiktoken file.
    tokenizers' BPE then merges the lowest-ranked pair first, as tiktoken does. (Using
    TikTokenConverter itself would need tiktoken and transformers to read a ggml file.)
    """
    from dwkit.converters.ggml_format import bytes_to_unicode

    eot = ENGLISH_EOT + int(n_vocab >= MULTILINGUAL_MIN_VOCAB)
    if len(tokens) < eot:
        raise ModelError(
            f"{path}: its vocabulary holds {len(tokens)} tokens, fewer than the {eot} text tokens of "
            "a Whisper vocabulary (a truncated or non-Whisper file)"
        )
    ranks = {token: rank for rank, token in enumerate(tokens[:eot])}
    if len(ranks) != eot:
        raise ModelError(f"{path}: its vocabulary repeats tokens; not a Whisper vocabulary")
    byte_chars = bytes_to_unicode()
    names = ["".join(byte_chars[b] for b in token) for token in tokens[:eot]]
    merges = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = ranks.get(token[:cut]), ranks.get(token[cut:])
            if left is not None and right is not None:
                merges.append((rank, left, right))
    merges.sort()
    specials = whisper_cpp_tokens(n_vocab)
    vocab = dict(zip(names, range(eot)))
    vocab[specials[0]] = eot
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": eot + i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, content in enumerate(specials)
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": {**byte_level, "add_prefix_space": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[names[left], names[right]] for _, left, right in merges],
        },
    }
