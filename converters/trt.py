"""transformers checkpoint (or an fp32 onnx directory) -> TensorRT engine directory.

TensorRT builds from the onnx export (`dwkit.converters.onnx`): the three plain graphs of
`onnx_graphs` (encoder, decoder_init, decoder_step; no `If` choosing between a first and a
later step), exported in fp32. The reduced precisions are TensorRT's own: fp16/bf16 are
builder flags on the fp32 graphs, with layer norm and softmax kept in float32; fp32 clears
TF32, which TensorRT otherwise enables by default.

Steps, each written into a temporary directory renamed into place only when all succeed:
1. export the graphs (or copy them from an fp32 onnx directory: `source` itself, or the
   `onnx_export` option) together with the tokenizer and config files;
2. check them for TensorRT: `onnx.checker`, no control flow (`If`/`Loop`/`Scan`), every op
   in `SUPPORTED_OPS`, the opset inside the parser's range, and every input dimension either
   fixed and equal to the plan's, or one of the dynamic dimensions the optimisation profiles
   cover (batch 1..max_batch, prompt 1..n_text_ctx, past 1..n_text_ctx-1; the 3000 mel
   frames and 1500 encoder positions are fixed);
3. write the build plan (`trt_plan.json`, also in the manifest): per engine, the profile
   (min/opt/max per input), the builder flags, the float32 layers, the workspace and the
   TensorRT version it targets;
4. build one engine per graph (`<graph>.engine`) through `dwkit.runtimes.tensorrt_api`, then
   validate them against transformers like the other formats.
`dry_run=True` stops after step 3: the directory then holds the graphs, the plan and a
manifest with `"engines_built": false`, and loading it names the fix. Without `dry_run`,
a machine without TensorRT 10 or an NVIDIA GPU is refused before anything is written.

The past length starts at 1, not 0: the step graph only runs after decoder_init has cached
at least one token (and torch.export marks the axis as at least 1).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dwkit.constants import N_FRAMES
from dwkit.converters.base import ConversionResult, atomic_output_dir, copy_if_present, library_versions
from dwkit.converters.onnx_graphs import (
    BATCH,
    DECODER_INIT,
    ENCODER_STATES,
    GRAPHS,
    INPUT_FEATURES,
    INPUT_IDS,
    PAST,
    PROMPT,
    data_file,
    graph_file,
    graph_io,
)
from dwkit.errors import BackendUnavailable, ConversionError, ModelError, ValidationError
from dwkit.manifest import read_manifest, weights_checksum, write_manifest
from dwkit.model_info import ModelInfo

PRECISIONS = ("fp16", "bf16", "fp32")
DEFAULT_PRECISION = "fp16"
OPTIONS = ("dry_run", "max_batch", "workspace_mib", "onnx_export", "threads", "progress")

DEFAULT_MAX_BATCH = 8
MAX_BATCH_LIMIT = 1024  # the export's batch axis bound (onnx_export.MAX_BATCH)
DEFAULT_WORKSPACE_MIB = 4096
PROMPT_OPT = 4  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>

PLAN_FILE = "trt_plan.json"
PLAN_VERSION = 1
TENSORRT_TARGET = ">=10,<11"
PARSER_OPSETS = (9, 20)  # TensorRT 10.0's ONNX parser reads opsets 9..20
CONTROL_FLOW = ("If", "Loop", "Scan")
DYNAMIC_DIMS = (BATCH, PROMPT, PAST)

# Ops TensorRT 10's ONNX parser imports (onnx-tensorrt docs/operators.md, TensorRT 10.x),
# less the control flow refused above and the ops only later 10.x releases added (Attention,
# RMSNormalization, RotaryEmbedding, TensorScatter). Default ONNX domain only: an op from any
# other domain (com.microsoft's fused kernels, int8 MatMulInteger graphs) is refused by name.
SUPPORTED_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv
    ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
    Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual
    Log LogSoftmax LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scatter ScatterElements ScatterND Selu Shape
    Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
    Squeeze STFT Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample
    Where Xor
    """.split()
)

# Builder settings per precision (trt.BuilderFlag / trt.LayerType member names).
PRECISION_SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {"flags": [], "cleared_flags": ["TF32"], "fp32_layers": [], "precision_constraints": None},
    "fp16": {
        "flags": ["FP16"],
        "cleared_flags": [],
        "fp32_layers": ["NORMALIZATION", "SOFTMAX"],
        "precision_constraints": "PREFER",
    },
    "bf16": {
        "flags": ["BF16"],
        "cleared_flags": [],
        "fp32_layers": ["NORMALIZATION", "SOFTMAX"],
        "precision_constraints": "PREFER",
    },
}
# Validation against transformers fp32, as for onnx: fp32 is gated, fp16/bf16 are recorded.
GATED = ("fp32",)
ONNX_STAGING = ".onnx-export"
MiB = 1 << 20


def engine_file(graph: str) -> str:
    return f"{graph}.engine"


def convert(
    source: Path,
    out_dir: str | Path,
    precision: str = DEFAULT_PRECISION,
    *,
    validate: bool = True,
    overwrite: bool = False,
    **opts: Any,
) -> ConversionResult:
    """Write `source` as a TensorRT model directory (graphs, plan, engines unless `dry_run`).

    `source`: a transformers Whisper checkpoint, or an fp32 onnx model directory (its graphs
    are reused, not exported again). Options: `dry_run` (check and plan, build nothing),
    `max_batch` (largest batch in the profiles, default 8; larger batches run in chunks),
    `workspace_mib` (TensorRT's workspace pool, default 4096), `onnx_export` (an fp32 onnx
    directory of the same checkpoint to copy the graphs from), `threads`, `progress`.
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown trt precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConversionError(
            f"trt conversion does not take {', '.join(unknown)}; it takes {', '.join(OPTIONS)}"
        )
    dry_run = bool(opts.get("dry_run", False))
    max_batch = check_max_batch(opts.get("max_batch"))
    workspace_mib = check_workspace(opts.get("workspace_mib"))
    if not dry_run:
        require_tensorrt("--to trt")
    source = Path(source)
    onnx_source = _onnx_manifest(source)
    timings: dict[str, float] = {}
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        with _stage("onnx graphs", timings):
            if onnx_source is not None:
                onnx_manifest = _copy_onnx_dir(source, onnx_source, tmp)
            else:
                onnx_manifest = _export(source, tmp, validate, opts)
        info = ModelInfo.from_dict(onnx_manifest["model_info"])
        with _stage("check graphs for TensorRT", timings):
            wanted = profiles(info, max_batch)
            checks = [check_graph(tmp / graph_file(g), wanted[g]) for g in GRAPHS]
        plan = build_plan(info, precision, max_batch, workspace_mib, checks)
        (tmp / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        manifest: dict[str, Any] = {
            "format": "trt",
            "precision": precision,
            "source": onnx_manifest.get("source"),
            "tool": "dwkit.converters.trt",
            "weights_checksum": weights_checksum(tmp),
            "opset": onnx_manifest.get("opset"),
            "library_versions": library_versions("torch", "transformers", "onnx", "onnxruntime", "tensorrt"),
            "graphs": checks,
            "onnx_validation": onnx_manifest.get("validation"),
            "model_info": info.to_dict(),
            "plan": plan,
            "engines_built": False,
            "build": None,
            "conversion_seconds": timings,
            "validation": None,
        }
        write_manifest(tmp, manifest)
        validation = None
        if not dry_run:
            with _stage("build engines", timings):
                manifest["build"] = build_engines(tmp, plan, tmp)
            manifest["engines_built"] = True
            manifest["weights_checksum"] = weights_checksum(tmp)
            write_manifest(tmp, manifest)
            if validate:
                with _stage("validate engines", timings):
                    validation = validate_engines(source, onnx_source is not None, tmp, precision)
                manifest["validation"] = validation
                write_manifest(tmp, manifest)
                if not validation["passed"]:
                    raise ValidationError(
                        f"trt {precision} does not match {validation['reference']}: "
                        f"{'; '.join(validation['failures'])}; nothing was written "
                        "(use --no-validate to keep it anyway)"
                    )
        files = sorted(p.name for p in tmp.iterdir())
    out = Path(out_dir).expanduser().resolve()
    return ConversionResult(out, "trt", precision, {"manifest_version": 1, **manifest}, validation, files)


def check_max_batch(value: Any) -> int:
    """The profiles' largest batch: an int in 1..MAX_BATCH_LIMIT (None: the default)."""
    if value is None:
        return DEFAULT_MAX_BATCH
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if str(number) != str(value).strip() or not 1 <= number <= MAX_BATCH_LIMIT:
        raise ConversionError(
            f"trt max_batch {value!r}: must be a whole number from 1 to {MAX_BATCH_LIMIT} "
            "(batches above it run in chunks of max_batch)"
        )
    return number


def check_workspace(value: Any) -> int:
    """TensorRT's workspace pool in MiB: a positive int (None: the default)."""
    if value is None:
        return DEFAULT_WORKSPACE_MIB
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise ConversionError(f"trt workspace_mib {value!r}: must be a whole number of MiB, at least 1")
    return int(value)


def require_tensorrt(what: str) -> None:
    """Refuse, in one line naming everything missing, to build engines on this machine."""
    from dwkit.runtimes import tensorrt_api

    reasons = tensorrt_api.missing()
    if reasons:
        raise BackendUnavailable(
            f"{what} builds TensorRT engines, which needs TensorRT 10 and an NVIDIA GPU: "
            f"{'; '.join(reasons)}. Use --dry-run to check the graphs and write the build plan without them"
        )


# -- the onnx graphs ------------------------------------------------------------------------


def _onnx_manifest(source: Path) -> dict[str, Any] | None:
    """The manifest of `source` when it is an onnx model directory (else None: a checkpoint)."""
    manifest = read_manifest(source) if source.is_dir() else None
    if not manifest or manifest.get("format") in (None, "hf"):  # a transformers checkpoint
        return None
    if manifest.get("format") != "onnx":
        raise ConversionError(
            f"{source}: is a {manifest.get('format')} model; convert to trt from the transformers "
            "checkpoint or from an fp32 onnx directory"
        )
    if manifest.get("precision") != "fp32":
        raise ConversionError(
            f"{source}: holds {manifest.get('precision')} onnx graphs; TensorRT builds from the fp32 "
            "graphs and applies the precision itself (convert with --to onnx --precision fp32)"
        )
    return manifest


def _copy_onnx_dir(source: Path, manifest: dict[str, Any], dst: Path) -> dict[str, Any]:
    from dwkit.converters.onnx import SIDE_FILES

    for graph in GRAPHS:
        if not (source / graph_file(graph)).is_file():
            raise ConversionError(f"{source}: missing {graph_file(graph)} (an incomplete onnx conversion?)")
        copy_if_present(source, dst, (graph_file(graph), data_file(graph)))
    copy_if_present(source, dst, SIDE_FILES)
    return manifest


def _export(source: Path, dst: Path, validate: bool, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The onnx converter's fp32 export (validated against transformers unless told not to),
    staged inside `dst` and moved up; returns its manifest."""
    from dwkit.converters import onnx as onnx_converter

    staging = dst / ONNX_STAGING
    onnx_opts: dict[str, Any] = {
        "progress": opts.get("progress", True),
        "threads": int(opts.get("threads", 0)),
    }
    if opts.get("onnx_export"):
        onnx_opts["fp32_export"] = opts["onnx_export"]
    onnx_converter.convert(source, staging, "fp32", validate=validate, overwrite=False, **onnx_opts)
    manifest = read_manifest(staging)
    assert manifest is not None
    for path in staging.iterdir():
        if path.name != "dwkit.json":
            path.rename(dst / path.name)
    shutil.rmtree(staging)
    return manifest


# -- checks -------------------------------------------------------------------------------------


def input_shapes(graph: str, info: ModelInfo) -> dict[str, tuple[int | str, ...]]:
    """Each input of `graph` with its fixed sizes and dynamic dimension names."""
    heads = info.decoder_heads
    head_dim = info.d_model // heads

    def shape(name: str) -> tuple[int | str, ...]:
        if name == INPUT_FEATURES:
            return (BATCH, info.n_mels, N_FRAMES)
        if name == ENCODER_STATES:
            return (BATCH, info.n_audio_ctx, info.d_model)
        if name == INPUT_IDS:
            return (BATCH, PROMPT if graph == DECODER_INIT else 1)
        if name.startswith("past_"):
            return (BATCH, heads, PAST, head_dim)
        if name.startswith("cross_"):
            return (BATCH, heads, info.n_audio_ctx, head_dim)
        raise ValueError(f"no shape for input {name!r}")

    return {name: shape(name) for name in graph_io(graph, info.decoder_layers).inputs}


def dimension_ranges(info: ModelInfo, max_batch: int) -> dict[str, dict[str, int]]:
    """min/opt/max of each dynamic dimension: what the shared decoders can ask for."""
    ctx = info.n_text_ctx
    return {
        BATCH: {"min": 1, "opt": max_batch, "max": max_batch},
        PROMPT: {"min": 1, "opt": min(PROMPT_OPT, ctx), "max": ctx},
        PAST: {"min": 1, "opt": max(1, ctx // 2), "max": ctx - 1},
    }


def profiles(info: ModelInfo, max_batch: int) -> dict[str, dict[str, dict[str, list[int]]]]:
    """graph -> input -> {"min", "opt", "max"} shapes: one optimisation profile per engine."""
    ranges = dimension_ranges(info, max_batch)
    found: dict[str, dict[str, dict[str, list[int]]]] = {}
    for graph in GRAPHS:
        found[graph] = {
            name: {
                key: [ranges[d][key] if isinstance(d, str) else d for d in dims]
                for key in ("min", "opt", "max")
            }
            for name, dims in input_shapes(graph, info).items()
        }
    return found


def profile_problems(
    inputs: list[dict[str, Any]], profile: Mapping[str, Mapping[str, list[int]]]
) -> list[str]:
    """Where a graph's declared inputs (name, shape with ints and dimension names) are not
    covered by `profile`; empty when every input and axis is."""
    problems = []
    declared = {v["name"] for v in inputs}
    for value in inputs:
        name, shape = value["name"], value["shape"]
        shapes = profile.get(name)
        if shapes is None:
            problems.append(f"input {name} has no optimisation profile")
            continue
        low, opt, high = shapes["min"], shapes["opt"], shapes["max"]
        if not len(shape) == len(low) == len(opt) == len(high):
            problems.append(f"input {name} has rank {len(shape)}, its profile rank {len(low)}")
            continue
        for axis, dim in enumerate(shape):
            lo, op, hi = low[axis], opt[axis], high[axis]
            if isinstance(dim, int) and dim > 0:
                if not lo == op == hi == dim:
                    problems.append(
                        f"input {name} axis {axis} is fixed at {dim} but the profile gives {lo}..{hi}"
                    )
            elif dim not in DYNAMIC_DIMS:
                problems.append(
                    f"input {name} axis {axis} is dynamic ({dim or 'unnamed'!r}) and no profile dimension "
                    f"covers it (the profiles cover {', '.join(DYNAMIC_DIMS)})"
                )
            elif not 1 <= lo <= op <= hi:
                problems.append(
                    f"input {name} axis {axis} ({dim}): profile min/opt/max {lo}/{op}/{hi} out of order"
                )
    for name in sorted(set(profile) - declared):
        problems.append(f"the profile names input {name}, which the graph does not have")
    return problems


def shape_problems(profile: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Which of the concrete input `shapes` fall outside `profile` (name -> min/opt/max, as
    dicts or (min, opt, max) tuples); empty when the engine accepts them all."""
    problems = []
    for name, shape in shapes.items():
        entry = profile[name]
        low, high = (entry["min"], entry["max"]) if isinstance(entry, Mapping) else (entry[0], entry[2])
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            problems.append(f"{name} {tuple(shape)} is outside the profile {tuple(low)}..{tuple(high)}")
    return problems


def check_graph(path: Path, profile: Mapping[str, Mapping[str, list[int]]]) -> dict[str, Any]:
    """onnx.checker, no control flow, only parser-supported ops, opset in range, every input
    axis covered by `profile`. Raises ConversionError naming the graph and the problem;
    returns the manifest entry."""
    import onnx

    from dwkit.converters.onnx import describe_io

    path = Path(path)
    name = path.name
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{name}: onnx.checker rejects it ({first})") from exc
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not PARSER_OPSETS[0] <= opset <= PARSER_OPSETS[1]:
        raise ConversionError(
            f"{name}: opset {opset} is outside TensorRT 10's ONNX parser range "
            f"{PARSER_OPSETS[0]}..{PARSER_OPSETS[1]} (re-export with dwconvert --to onnx)"
        )
    ops = op_types(model)
    control = [op for op in CONTROL_FLOW if op in ops]
    if control:
        raise ConversionError(
            f"{name}: has {'/'.join(control)} node(s); TensorRT engines are built from dwkit's plain "
            "graphs without control flow (re-export with dwconvert --to onnx)"
        )
    unsupported = sorted(op for op in ops if op not in SUPPORTED_OPS)
    if unsupported:
        raise ConversionError(
            f"{name}: TensorRT's ONNX parser does not support {', '.join(unsupported)} "
            "(build from the fp32 onnx export)"
        )
    inputs = [describe_io(v) for v in model.graph.input]
    problems = profile_problems(inputs, profile)
    if problems:
        raise ConversionError(f"{name}: not covered by the optimisation profiles: {'; '.join(problems)}")
    return {
        "file": name,
        "opset": opset,
        "op_types": dict(sorted(ops.items())),
        "control_flow": [],
        "unsupported_ops": [],
        "inputs": inputs,
        "outputs": [describe_io(v) for v in model.graph.output],
    }


def op_types(model: Any) -> dict[str, int]:
    """Op counts over the graph, subgraphs and local functions; ops outside the default domain
    are named `domain::Op`. A call to a local function counts the function's body instead."""
    import onnx

    functions = {(f.domain, f.name): f for f in model.functions}
    counts: dict[str, int] = {}

    def visit(nodes: Any, seen: tuple[tuple[str, str], ...]) -> None:
        for node in nodes:
            key = (node.domain, node.op_type)
            if key in functions:
                if key not in seen:
                    visit(functions[key].node, (*seen, key))
                continue
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            counts[op] = counts.get(op, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g.node, seen)
                for sub in attr.graphs:
                    visit(sub.node, seen)

    visit(model.graph.node, ())
    return counts


# -- plan and build -------------------------------------------------------------------------------


def build_plan(
    info: ModelInfo, precision: str, max_batch: int, workspace_mib: int, checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """Everything the engine build needs, as data: the same plan builds the same engines."""
    settings = PRECISION_SETTINGS[precision]
    wanted = profiles(info, max_batch)
    return {
        "plan_version": PLAN_VERSION,
        "precision": precision,
        "max_batch": max_batch,
        "dimensions": {
            **dimension_ranges(info, max_batch),
            "mel_frames": N_FRAMES,
            "encoder_positions": info.n_audio_ctx,
        },
        "builder": {**settings, "workspace_bytes": workspace_mib * MiB},
        "tensorrt": {"target": TENSORRT_TARGET, "parser_opsets": list(PARSER_OPSETS), "network_flags": []},
        "engines": {
            graph: {
                "onnx": graph_file(graph),
                "engine": engine_file(graph),
                "opset": check["opset"],
                "profile": wanted[graph],
            }
            for graph, check in zip(GRAPHS, checks)
        },
    }


def engine_spec(plan: Mapping[str, Any], graph: str) -> Any:
    """The tensorrt_api.EngineSpec of `graph` in `plan`."""
    from dwkit.runtimes.tensorrt_api import EngineSpec

    builder = plan["builder"]
    return EngineSpec(
        profile=plan["engines"][graph]["profile"],
        flags=builder["flags"],
        cleared_flags=builder["cleared_flags"],
        fp32_layers=builder["fp32_layers"],
        precision_constraints=builder["precision_constraints"],
        workspace_bytes=builder["workspace_bytes"],
    )


def build_engines(graph_dir: Path, plan: Mapping[str, Any], engine_dir: Path) -> dict[str, Any]:
    """Build every engine of `plan` from the graphs in `graph_dir` into `engine_dir`."""
    from dwkit.runtimes import tensorrt_api

    built = {}
    for graph in GRAPHS:
        entry = plan["engines"][graph]
        built[graph] = tensorrt_api.build_engine(
            Path(graph_dir) / entry["onnx"], Path(engine_dir) / entry["engine"], engine_spec(plan, graph)
        )
    return {**tensorrt_api.versions(), "engines": built}


def validate_engines(source: Path, source_is_onnx: bool, model_dir: Path, precision: str) -> dict[str, Any]:
    """Load the built engines and compare them with transformers (or, for an onnx source, with
    onnxruntime on the same graphs, which the onnx conversion validated against transformers)."""
    from dwkit.compare import compare_backends, gate, validation_mel
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.trt import TrtBackend

    if source_is_onnx:
        from dwkit.runtimes.onnx import OnnxBackend

        reference: Any = OnnxBackend.from_model_dir(source, RuntimeConfig())
        reference_name = "onnxruntime fp32 (CPU) on the same graphs"
    else:
        from dwkit.runtimes.hf import HFBackend

        reference = HFBackend.from_model_dir(source, RuntimeConfig())
        reference_name = "hf fp32"
    candidate = TrtBackend.from_model_dir(model_dir, RuntimeConfig(device="cuda"))
    mel = validation_mel(reference.info.n_mels)
    started = time.perf_counter()
    report = compare_backends(reference, candidate, mel).to_dict()
    return {
        **gate(report, precision in GATED),
        "reference": reference_name,
        "runtime": "TensorRT",
        "input": "dwkit.compare.validation_mel (the bundled demo speech, first 30 s)",
        "seconds": round(time.perf_counter() - started, 2),
        **report,
    }


def read_plan(model_dir: Path) -> dict[str, Any]:
    """The build plan of a trt directory."""
    path = Path(model_dir) / PLAN_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable build plan ({exc})") from exc


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 2)
