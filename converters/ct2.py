"""transformers checkpoint -> CTranslate2 model directory (what faster-whisper loads).

CTranslate2's own `TransformersConverter` writes model.bin, its config.json and the
vocabulary; this module adds the files the shared pipeline and faster-whisper read
(tokenizer.json, tokenizer_config.json, preprocessor_config.json, generation_config.json),
validates the result in CTranslate2 against transformers on a fixed input, and writes the
`dwkit.json` manifest. Everything happens in a temporary sibling directory that is renamed
into place only when complete, so a failed conversion leaves nothing behind.

Precisions are CTranslate2's quantization names. The default is float16: it is what
faster-whisper users download (the Systran/faster-whisper-* and faster-distil-whisper-*
repositories are `--quantization float16`), it halves the file, and CTranslate2 converts the
weights at load time to whatever compute type the device runs (float16 on a GPU, float32 or
int8 on a CPU), so one directory serves every machine.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from dwkit.converters.base import (
    ConversionResult,
    atomic_output_dir,
    copy_if_present,
    library_versions,
    record_validation,
    require_checkpoint,
)
from dwkit.errors import ConversionError
from dwkit.manifest import weights_checksum, write_manifest
from dwkit.model_info import ModelInfo

PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32", "int8_bfloat16")
DEFAULT_PRECISION = "float16"
MODEL_FILE = "model.bin"
SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",  # the shared tokenizer reads clean_up_tokenization_spaces from it
    "preprocessor_config.json",  # faster-whisper reads n_mels (feature_size) from it
    "generation_config.json",
)
# Validation gate, against transformers fp32 on `validation_mel`. float32 must reproduce it:
# first-step logits within 1e-3 (dwkit.compare.gate) and identical greedy tokens (measured on tiny.en and
# base: logits ~3e-5, tokens identical). Every other precision rounds weights by design, so
# its numbers are recorded, not gated; WER is their measure.
GATED = ("float32",)
# Conversion options this module takes (beyond validate/overwrite).
OPTIONS = ("threads", "low_cpu_mem_usage")


def convert(
    source: Path,
    out_dir: str | Path,
    precision: str = DEFAULT_PRECISION,
    *,
    validate: bool = True,
    overwrite: bool = False,
    **opts: Any,
) -> ConversionResult:
    """Write `source` (a transformers Whisper checkpoint) as a CTranslate2 model directory.

    The directory appears only when everything, validation included, succeeded. Options:
    `threads` (CPU threads for validation, 0 = library default) and `low_cpu_mem_usage`
    (passed to transformers when loading the source, default True).
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown ct2 precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConversionError(
            f"ct2 conversion does not take {', '.join(unknown)}; it takes {', '.join(OPTIONS)}"
        )
    threads = int(opts.get("threads", 0))
    source = Path(source)
    info = ModelInfo.from_hf_dir(source)
    require_checkpoint(source)

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        started = time.perf_counter()
        _run_converter(source, tmp, precision, bool(opts.get("low_cpu_mem_usage", True)))
        seconds = time.perf_counter() - started
        copied = copy_if_present(source, tmp, SIDE_FILES)
        if "preprocessor_config.json" not in copied:
            _write_preprocessor_config(tmp, info.n_mels)
        manifest: dict[str, Any] = {
            "format": "ct2",
            "precision": precision,
            "source": {**source_id(source), "weights_checksum": weights_checksum(source)},
            "tool": "dwkit.converters.ct2",
            "model_file": MODEL_FILE,
            "weights_checksum": weights_checksum(tmp),
            "library_versions": library_versions("ctranslate2", "transformers", "torch", "faster-whisper"),
            "model_info": info.to_dict(),
            "conversion_seconds": round(seconds, 2),
            "validation": None,
        }
        write_manifest(tmp, manifest)
        validation = None
        if validate:
            validation = validate_model(source, tmp, precision, threads=threads)
            record_validation(tmp, manifest, validation, "ct2", precision)
        files = sorted(p.name for p in tmp.iterdir())
    out = Path(out_dir).expanduser().resolve()
    return ConversionResult(out, "ct2", precision, {"manifest_version": 1, **manifest}, validation, files)


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


_HUB_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]+)")


def source_id(source: Path) -> dict[str, str]:
    """The source as a user would name it: its path, and the hub id + revision of a hub snapshot."""
    found: dict[str, str] = {"path": str(Path(source).resolve())}
    match = _HUB_SNAPSHOT.search(Path(source).as_posix())
    if match:
        found["hub_id"] = f"{match['org']}/{match['name']}"
        found["revision"] = match["revision"]
    return found


def validate_model(source: Path, model_dir: Path, precision: str, threads: int = 0) -> dict[str, Any]:
    """Load the written directory in CTranslate2 and compare it with transformers fp32.

    CTranslate2 runs the model's own precision ("default" compute type): on a CPU that is
    float32 arithmetic for float16/bfloat16 weights and int8 for int8_* weights.
    """
    from dwkit.compare import compare_backends, gate, validation_mel
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.ct2 import CT2Backend
    from dwkit.runtimes.hf import HFBackend

    info = ModelInfo.from_hf_dir(source)
    mel = validation_mel(info.n_mels)
    reference = HFBackend.from_model_dir(source, RuntimeConfig(threads=threads))
    candidate = CT2Backend.from_model_dir(model_dir, RuntimeConfig(threads=threads))
    started = time.perf_counter()
    report = compare_backends(reference, candidate, mel).to_dict()
    return {
        **gate(report, precision in GATED),
        "reference": "hf fp32",
        "compute_type": candidate.model.compute_type,
        "input": "dwkit/data/demo.flac (first 30 s)",
        "seconds": round(time.perf_counter() - started, 2),
        **report,
    }
