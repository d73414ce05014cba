"""transformers checkpoint (or an fp32 onnx directory) -> TensorRT engine directory.

TensorRT builds from the onnx export (`dwkit.converters.onnx`): the three plain graphs of
`onnx_graphs` (encoder, decoder_init, decoder_step; no `If` choosing between a first and a
later step), exported in fp32. The reduced precisions are TensorRT's own: fp16/bf16 are
builder flags on the fp32 graphs, with layer norm and softmax kept in float32; fp32 clears
TF32, which TensorRT otherwise enables by default.

Steps, each written into a temporary directory renamed into place only when all succeed:
1. export the graphs (or copy them from an fp32 onnx directory: `source` itself, or the
   `onnx_export` option) together with the tokenizer and config files;
2. check them for TensorRT and write the build plan (`trt_plan.json`, also in the manifest),
   then build one engine per graph (`<graph>.engine`): `dwkit.trt_build`, which the trt
   runtime uses too when it builds the engines of an onnx directory (batch 1..max_batch,
   prompt 1..n_text_ctx, past 1..n_text_ctx-1; the 3000 mel frames and 1500 encoder positions
   are fixed);
3. validate the engines against transformers like the other formats.
`word_timestamps=True` (`--word-timestamps`) exports the alignment graph too (or needs an onnx
source that holds it) and builds its engine, which the trt backend's `cross_attentions` runs.
`dry_run=True` stops before the engines: the directory then holds the graphs, the plan and a
manifest with `"engines_built": false`, and loading it names the fix. Without `dry_run`,
a machine without TensorRT 10 or an NVIDIA GPU is refused before anything is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwkit.converters import template
from dwkit.converters.base import copy_if_present
from dwkit.errors import ConversionError
from dwkit.manifest import read_manifest
from dwkit.model_info import ModelInfo
from dwkit.onnx_graphs import DECODER_ALIGN, data_file, export_graphs, graph_file
from dwkit.trt_build import build_engines, check_max_batch, check_workspace, require_tensorrt, write_plan

# Validation against transformers fp32, as for onnx: fp32 is gated ([validation.trt] in
# dwkit/data/parity_thresholds.toml), fp16/bf16 are recorded.
FORMAT = template.FormatSpec(
    name="trt",
    module=__name__,
    extra="onnx",
    precisions=("fp16", "bf16", "fp32"),
    default_precision="fp16",
    requires=("onnx",),
    options=(
        "dry_run",
        "max_batch",
        "workspace_mib",
        "onnx_export",
        "word_timestamps",
        "threads",
        "progress",
    ),
    libraries=("torch", "transformers", "onnx", "onnxruntime", "tensorrt"),
    reads=("onnx",),
)
ONNX_STAGING = ".onnx-export"


def check_options(
    source: Path, precision: str, opts: Mapping[str, Any], source_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`dry_run` (check and plan, build nothing), `max_batch` (largest batch in the profiles,
    default 8; larger batches run in chunks), `workspace_mib` (TensorRT's workspace pool,
    default 4096), `onnx_export` (an fp32 onnx directory of the same checkpoint to copy the
    graphs from), `word_timestamps` (build the alignment graph's engine too), `threads`,
    `progress`. Without `dry_run`, a machine without TensorRT 10 or an NVIDIA GPU is refused
    here, before anything is written."""
    dry_run = bool(opts.get("dry_run", False))
    word_timestamps = opts.get("word_timestamps", False)
    if not isinstance(word_timestamps, bool):
        raise ConversionError(f"trt word_timestamps {word_timestamps!r}: must be true or false")
    if word_timestamps and source_manifest is not None and not (source / graph_file(DECODER_ALIGN)).is_file():
        raise ConversionError(
            f"{source}: has no {graph_file(DECODER_ALIGN)} to build word timestamps from; export it with "
            "dwconvert --to onnx --word-timestamps (or convert the checkpoint with --to trt --word-timestamps)"
        )
    checked = {
        "dry_run": dry_run,
        "max_batch": check_max_batch(opts.get("max_batch")),
        "workspace_mib": check_workspace(opts.get("workspace_mib")),
        "onnx_export": opts.get("onnx_export"),
        "word_timestamps": word_timestamps,
        "threads": int(opts.get("threads", 0)),
        "progress": opts.get("progress", True),
    }
    if not dry_run:
        require_tensorrt("--to trt")
    if source_manifest is not None and source_manifest.get("precision") != "fp32":
        raise ConversionError(
            f"{source}: holds {source_manifest.get('precision')} onnx graphs; TensorRT builds from the fp32 "
            "graphs and applies the precision itself (convert with --to onnx --precision fp32)"
        )
    return checked


def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> template.Written:
    """The fp32 graphs, the TensorRT checks and plan, and (unless a dry run) the engines."""
    options = job.options
    with stages("onnx graphs"):
        if job.source_manifest is not None:
            onnx_manifest = _copy_onnx_dir(job.source, job.source_manifest, out)
        else:
            onnx_manifest = _export(job.source, out, job.validate, options)
    info = ModelInfo.from_dict(onnx_manifest["model_info"])
    with stages("check graphs for TensorRT"):
        checks, plan = write_plan(
            out, out, info, job.precision, options["max_batch"], options["workspace_mib"]
        )
    build = None
    if not options["dry_run"]:
        with stages("build engines"):
            build = build_engines(out, plan, out)
    fields = {
        "opset": onnx_manifest.get("opset"),
        "graphs": checks,
        "onnx_validation": onnx_manifest.get("validation"),
        "plan": plan,
        "engines_built": build is not None,
        "build": build,
        "word_timestamps": plan["word_timestamps"],
    }
    return template.Written(info, fields, source=onnx_manifest.get("source"))


def _copy_onnx_dir(source: Path, manifest: dict[str, Any], dst: Path) -> dict[str, Any]:
    from dwkit.converters.onnx import FORMAT as ONNX

    for graph in export_graphs((source / graph_file(DECODER_ALIGN)).is_file()):
        if not (source / graph_file(graph)).is_file():
            raise ConversionError(f"{source}: missing {graph_file(graph)} (an incomplete onnx conversion?)")
        copy_if_present(source, dst, (graph_file(graph), data_file(graph)))
    copy_if_present(source, dst, ONNX.side_files)
    return manifest


def _export(source: Path, dst: Path, validate: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    """The onnx converter's fp32 export (validated against transformers unless told not to),
    staged inside `dst` and moved up; returns its manifest."""
    from dwkit.converters import convert

    staging = dst / ONNX_STAGING
    onnx_opts: dict[str, Any] = {"progress": options["progress"], "threads": options["threads"]}
    if options["onnx_export"]:
        onnx_opts["fp32_export"] = options["onnx_export"]
    if options["word_timestamps"]:
        onnx_opts["word_timestamps"] = True
    convert(source, staging, "onnx", "fp32", validate=validate, overwrite=False, **onnx_opts)
    manifest = read_manifest(staging)
    assert manifest is not None
    for path in staging.iterdir():
        if path.name != "dwkit.json":
            path.rename(dst / path.name)
    shutil.rmtree(staging)
    return manifest


def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any] | None:
    """Load the built engines and compare them with transformers (or, for an onnx source, with
    onnxruntime on the same graphs, which the onnx conversion validated against transformers).
    A dry run built nothing to run: None."""
    if job.options["dry_run"]:
        return None
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.trt import TrtBackend

    threads = job.options["threads"]
    if job.source_manifest is not None:
        from dwkit.runtimes.onnx import OnnxBackend

        reference: Any = OnnxBackend.from_model_dir(job.source, RuntimeConfig(threads=threads))
        reference_name = "onnxruntime fp32 (CPU) on the same graphs"
    else:
        reference, reference_name = template.hf_reference(job.source, threads), "hf fp32"
    candidate = TrtBackend.from_model_dir(model_dir, RuntimeConfig(device="cuda", threads=threads))
    return template.numeric_validation(
        reference, candidate, FORMAT, job.precision, reference_name, runtime="TensorRT"
    )
