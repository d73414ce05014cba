"""transformers checkpoint -> whisper.cpp model file (ggml), streamed tensor by tensor.

The file layout, name map and per-tensor types are data in `ggml_format`; this module reads
the checkpoint one tensor at a time (a 1.5 GB f32 model is never held twice), writes
`ggml-model.bin`; the shared template copies the tokenizer and configs the shared pipeline
reads, validates the result in whisper.cpp itself against transformers, and writes the
`dwkit.json` manifest.

Precisions are whisper.cpp's type names. f32 keeps the conv weights f32 like whisper.cpp's
own converter (an all-f32 file); q8_0/q5_0/q4_0 quantise the 2-D weights (token embedding
included, positional embeddings excluded) with gguf-py, whose bytes equal ggml's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters import ggml_format as fmt
from dwkit.converters import template
from dwkit.converters.base import reading_weights
from dwkit.errors import ConversionError, DwkitError, ModelError
from dwkit.model_info import ModelInfo

MODEL_FILE = "ggml-model.bin"
# Validation: whisper.cpp (flash attention off) against transformers fp32, gated per precision
# by [validation.ggml] in dwkit/data/parity_thresholds.toml (the measurements are there too).
FORMAT = template.FormatSpec(
    name="ggml",
    module=__name__,
    extra="ggml",
    precisions=("f32", "f16", "q8_0", "q5_0", "q4_0"),
    default_precision="f16",
    requires=("torch", "safetensors", "gguf"),
    options=("threads",),
    libraries=("transformers", "torch", "safetensors", "gguf", "numpy", "pywhispercpp"),
    side_files=(
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
    ),
)


def check_options(
    source: Path, precision: str, opts: Mapping[str, Any], source_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`threads` (CPU threads for validation); refuses shapes whisper.cpp cannot represent
    before anything is written."""
    config = json.loads((source / "config.json").read_text())
    hparams = hparams_from_config(config, precision)
    return {"threads": int(opts.get("threads", 0)), "config": config, "hparams": hparams}


def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> template.Written:
    assert job.info is not None  # ggml converts checkpoints only
    info = job.info
    with stages("write"):
        write_model_file(
            job.source, out / MODEL_FILE, job.options["config"], job.options["hparams"], info, job.precision
        )
    # Word timestamps need nothing in the file: whisper.cpp's own DTW runs on any model (runtimes/ggml.py).
    fields = {"model_file": MODEL_FILE, "whisper_cpp": _whisper_cpp_version(), "word_timestamps": True}
    return template.Written(info, fields)


def hparams_from_config(config: dict[str, Any], precision: str) -> dict[str, int]:
    """whisper.cpp's 11 header numbers; refuses shapes whisper.cpp cannot represent."""
    d_model = int(config["d_model"])
    for key in ("encoder_ffn_dim", "decoder_ffn_dim"):
        if int(config.get(key, 4 * d_model)) != 4 * d_model:
            raise ConversionError(
                f"{key}={config[key]} but whisper.cpp hard-codes the MLP width to 4 * d_model "
                f"= {4 * d_model}; this model cannot be written as ggml"
            )
    if precision.startswith("q") and d_model % 32:
        raise ConversionError(f"d_model {d_model} is not a multiple of 32: use f16 or f32")
    return {
        "n_vocab": int(config["vocab_size"]),
        "n_audio_ctx": int(config["max_source_positions"]),
        "n_audio_state": d_model,
        "n_audio_head": int(config["encoder_attention_heads"]),
        "n_audio_layer": int(config["encoder_layers"]),
        "n_text_ctx": int(config["max_target_positions"]),
        "n_text_state": d_model,
        "n_text_head": int(config["decoder_attention_heads"]),
        "n_text_layer": int(config["decoder_layers"]),
        "n_mels": int(config["num_mel_bins"]),
        "ftype": fmt.header_ftype(precision),
    }


def write_model_file(
    source: Path,
    path: Path,
    config: dict[str, Any],
    hparams: dict[str, int],
    info: ModelInfo,
    precision: str,
) -> list[str]:
    """Stream the checkpoint into `path`; returns the whisper.cpp tensor names written."""
    from dwkit.features import mel_filters

    tokenizer = json.loads((source / "tokenizer.json").read_text())
    try:
        bpe = tokenizer["model"]["vocab"]
        # Every id of the BPE table (English-only tables include <|endoftext|>, like OpenAI's files).
        tokens = fmt.vocab_bytes(bpe, len({i for i in bpe.values() if i < info.vocab_size}))
    except (KeyError, ValueError) as exc:
        raise ConversionError(f"{source}/tokenizer.json: not a byte-level BPE vocabulary ({exc})") from exc
    tied = config.get("tie_word_embeddings", True)
    written: list[str] = []
    with open(path, "wb") as out:
        # whisper.cpp's filter bank is [n_mel, n_fft]; ours is [n_fft, n_mel].
        fmt.write_header(out, hparams, mel_filters(hparams["n_mels"]).T, tokens)
        for hf_name, array in _checkpoint_tensors(source):
            if hf_name == "proj_out.weight" and not tied:
                raise ConversionError(
                    f"{source}: proj_out is not tied to the token embedding; whisper.cpp "
                    "cannot represent an untied output projection"
                )
            try:
                name = fmt.ggml_name(hf_name)
            except KeyError as exc:
                raise ConversionError(f"{source}: {exc.args[0]} (not a Whisper checkpoint?)") from exc
            if name is None:
                continue
            array = fmt.file_shape(name, array)
            try:
                fmt.write_tensor(out, name, array, fmt.tensor_type(name, array.ndim, precision))
            except ValueError as exc:
                raise ConversionError(f"{name}: {exc}") from exc
            written.append(name)
    expected = _expected_names(hparams)
    if set(written) != expected:
        missing = sorted(expected - set(written))[:5]
        raise ConversionError(f"{source}: checkpoint lacks tensors whisper.cpp needs: {missing}")
    return written


def _expected_names(hparams: dict[str, int]) -> set[str]:
    names = {
        "encoder.positional_embedding",
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        "decoder.ln.weight",
        "decoder.ln.bias",
    }
    common = ["mlp_ln", "mlp.0", "mlp.2", "attn_ln", "attn.query", "attn.value", "attn.out"]
    for part, layers, extra in (
        ("encoder", hparams["n_audio_layer"], []),
        (
            "decoder",
            hparams["n_text_layer"],
            ["cross_attn_ln", "cross_attn.query", "cross_attn.value", "cross_attn.out"],
        ),
    ):
        for i in range(layers):
            for module in common + extra:
                names |= {f"{part}.blocks.{i}.{module}.weight", f"{part}.blocks.{i}.{module}.bias"}
            names.add(f"{part}.blocks.{i}.attn.key.weight")
            if part == "decoder":
                names.add(f"{part}.blocks.{i}.cross_attn.key.weight")
    return names


def _checkpoint_tensors(source: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) pairs, one tensor in memory at a time, encoder first."""
    with reading_weights(source):
        yield from _read_tensors(source)


def _read_tensors(source: Path) -> Iterator[tuple[str, np.ndarray]]:
    files = sorted(source.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        handles = [safe_open(str(f), framework="pt") for f in files]
        names = sorted((n, i) for i, h in enumerate(handles) for n in h.keys())
        for name, i in sorted(names, key=lambda item: _order(item[0])):
            yield name, handles[i].get_tensor(name).float().numpy()
        return
    bins = sorted(source.glob("pytorch_model*.bin"))
    if not bins:
        raise ModelError(f"{source}: no weights (model.safetensors or pytorch_model.bin)")
    import torch

    for path in bins:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        for name in sorted(state, key=_order):
            yield name, state[name].float().numpy()
        del state


def _order(name: str) -> tuple[int, str]:
    return (0 if ".encoder." in f".{name}" else 1, name)


def _whisper_cpp_version() -> str | None:
    try:
        from dwkit.runtimes.whispercpp_ctypes import library

        return library().version
    except DwkitError:
        return None


# --- validation ------------------------------------------------------------------------------


def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any]:
    """Load the written file in whisper.cpp (flash attention off) and compare with transformers."""
    if job.precision == "f32":
        return _validate_load_only(model_dir)
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.ggml import GgmlBackend

    threads = job.options["threads"]
    reference = template.hf_reference(job.source, threads)
    candidate = GgmlBackend.from_model_dir(
        model_dir, RuntimeConfig(threads=threads, options={"flash_attn": False})
    )
    try:
        return template.numeric_validation(reference, candidate, FORMAT, job.precision, flash_attn=False)
    finally:
        candidate.close()


def _validate_load_only(model_dir: Path) -> dict[str, Any]:
    """f32: whisper.cpp 1.8.5 loads the file, but its CPU convolution aborts the process on f32
    kernels, so nothing can be run: check that it loads and say plainly what was not checked."""
    from dwkit.runtimes.whispercpp_ctypes import WhisperContext

    context = WhisperContext(model_dir / MODEL_FILE, flash_attn=False)
    try:
        loaded = {"n_vocab": context.n_vocab, "n_mels": context.n_mels, "ftype": context.ftype}
    finally:
        context.close()
    return {
        "passed": None,  # neither passed nor failed: the numerics could not be run
        "level": "load",
        "failures": [],
        "loaded": loaded,
        "note": (
            f"loaded by whisper.cpp {_whisper_cpp_version()}; numerics not compared: its CPU "
            "convolution needs f16 kernels and aborts on all-f32 files (use f16 to run)"
        ),
    }
