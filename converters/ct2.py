"""transformers checkpoint -> CTranslate2 model directory (what faster-whisper loads).

CTranslate2's own `TransformersConverter` writes model.bin, its config.json and the
vocabulary; the shared template (`converters/template.py`) copies the files the shared
pipeline and faster-whisper read (tokenizer.json, tokenizer_config.json,
preprocessor_config.json, generation_config.json; this module writes the preprocessor config
a checkpoint lacks), validates the result in CTranslate2 against transformers on a fixed
input, and writes the `dwkit.json` manifest, all in a temporary directory renamed into place
only when complete.

Precisions are CTranslate2's quantization names. The default is float16: it is what
faster-whisper users download (the Systran/faster-whisper-* and faster-distil-whisper-*
repositories are `--quantization float16`), it halves the file, and CTranslate2 converts the
weights at load time to whatever compute type the device runs (float16 on a GPU, float32 or
int8 on a CPU), so one directory serves every machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwkit.converters import template
from dwkit.errors import ConversionError

MODEL_FILE = "model.bin"
# Validation: float32 is gated ([validation.ct2] in dwkit/data/parity_thresholds.toml); every
# other precision rounds weights by design, so its numbers are recorded, not gated.
FORMAT = template.FormatSpec(
    name="ct2",
    module=__name__,
    extra="ct2",
    precisions=("float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32", "int8_bfloat16"),
    default_precision="float16",
    requires=("ctranslate2", "transformers", "torch"),
    options=("threads", "low_cpu_mem_usage"),
    libraries=("ctranslate2", "transformers", "torch", "faster-whisper"),
    side_files=(
        "tokenizer.json",
        "tokenizer_config.json",  # the shared tokenizer reads clean_up_tokenization_spaces from it
        "preprocessor_config.json",  # faster-whisper reads n_mels (feature_size) from it
        "generation_config.json",
    ),
)


def check_options(
    source: Path, precision: str, opts: Mapping[str, Any], source_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`threads` (CPU threads for validation, 0 = library default) and `low_cpu_mem_usage`
    (passed to transformers when loading the source, default True)."""
    return {
        "threads": int(opts.get("threads", 0)),
        "low_cpu_mem_usage": bool(opts.get("low_cpu_mem_usage", True)),
    }


def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> template.Written:
    """CTranslate2's converter, plus the preprocessor config a checkpoint may lack."""
    assert job.info is not None  # ct2 converts checkpoints only
    info = job.info
    with stages("convert"):
        _run_converter(job.source, out, job.precision, job.options["low_cpu_mem_usage"])
    if not (job.source / "preprocessor_config.json").is_file():
        _write_preprocessor_config(out, info.n_mels)
    return template.Written(info, {"model_file": MODEL_FILE})


def _run_converter(source: Path, out: Path, precision: str, low_cpu_mem_usage: bool) -> None:
    """CTranslate2's own converter; its errors become one line."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:  # pragma: no cover - the registry reports the extra first
        raise ConversionError("--to ct2 needs ctranslate2: pip install 'dwkit[ct2]'") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        converter = TransformersConverter(str(source), low_cpu_mem_usage=low_cpu_mem_usage)
        converter.convert(str(out), quantization=precision, force=True)  # `out` is our empty temp dir
    except Exception as exc:  # the converter raises whatever transformers or torch raised
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ConversionError(f"{source}: CTranslate2's converter failed ({message})") from exc
    if not (out / MODEL_FILE).is_file():
        raise ConversionError(f"{source}: CTranslate2's converter wrote no {MODEL_FILE}")


def _write_preprocessor_config(out: Path, n_mels: int) -> None:
    """The feature extractor settings of a Whisper checkpoint that shipped none.

    Without it faster-whisper assumes 80 mel bins, which breaks 128-mel models
    (large-v3, distil-large-v3.x).
    """
    config = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": n_mels,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any]:
    """Load the written directory in CTranslate2 and compare it with transformers fp32.

    CTranslate2 runs the model's own precision ("default" compute type): on a CPU that is
    float32 arithmetic for float16/bfloat16 weights and int8 for int8_* weights.
    """
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.ct2 import CT2Backend

    threads = job.options["threads"]
    reference = template.hf_reference(job.source, threads)
    candidate = CT2Backend.from_model_dir(model_dir, RuntimeConfig(threads=threads))
    return template.numeric_validation(
        reference, candidate, FORMAT, job.precision, compute_type=candidate.model.compute_type
    )
