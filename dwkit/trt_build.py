"""TensorRT engines from dwkit's fp32 ONNX graphs: the checks, the build plan and the build.

One owner for both routes that build engines: `dwconvert --to trt` (converters/trt.py) and
the trt runtime loading an onnx directory, which builds its engines once into an engine cache
(`engines_for_onnx_dir`). Both check the graphs with the same rules, write the same plan from
the same optimisation profiles (`dwkit.onnx_graphs.profiles`) and build through
`dwkit.runtimes.tensorrt_api`, so an engine cache entry and a converted directory hold the
same engines.

Steps: check each graph for TensorRT (onnx.checker, no control flow, every op in
`SUPPORTED_OPS`, the opset inside the parser's range, every input dimension either fixed and
equal to the plan's or one of the dynamic dimensions the profiles cover); write the plan
(`trt_plan.json`: per engine the profile, the builder flags, the float32 layers, the workspace
and the TensorRT version it targets); build one `<graph>.engine` per graph. An export made
for word timestamps holds the alignment graph too (`onnx_graphs.DECODER_ALIGN`): it gets its
own engine (batch 1, tokens 1..n_text_ctx), and the plan records `"word_timestamps"`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwkit.errors import BackendUnavailable, ConversionError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.onnx_check import inspect_graph
from dwkit.onnx_graphs import (
    DECODER_ALIGN,
    GRAPHS,
    MAX_BATCH,
    N_FRAMES,
    dimension_ranges,
    export_graphs,
    graph_file,
    profile_problems,
    profiles,
)

DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_MIB = 4096
MiB = 1 << 20

PLAN_FILE = "trt_plan.json"
PLAN_VERSION = 1
BUILD_FACTS = "trt_build.json"  # in an engine cache entry: written last, so its presence means complete
TENSORRT_TARGET = ">=10,<11"
PARSER_OPSETS = (9, 20)  # TensorRT 10.0's ONNX parser reads opsets 9..20
CONTROL_FLOW = ("If", "Loop", "Scan")

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

# Builder settings per precision (trt.BuilderFlag / trt.LayerType member names). The reduced
# precisions are TensorRT's own: fp16/bf16 are builder flags on the fp32 graphs, with layer
# norm and softmax kept in float32; fp32 clears TF32, which TensorRT otherwise enables.
_REDUCED = {
    "cleared_flags": [],
    "fp32_layers": ["NORMALIZATION", "SOFTMAX"],
    "precision_constraints": "PREFER",
}
PRECISION_SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {"flags": [], "cleared_flags": ["TF32"], "fp32_layers": [], "precision_constraints": None},
    "fp16": {"flags": ["FP16"], **_REDUCED},
    "bf16": {"flags": ["BF16"], **_REDUCED},
}


def engine_file(graph: str) -> str:
    return f"{graph}.engine"


def check_max_batch(value: Any) -> int:
    """The profiles' largest batch: an int in 1..MAX_BATCH (None: the default)."""
    if value is None:
        return DEFAULT_MAX_BATCH
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if str(number) != str(value).strip() or not 1 <= number <= MAX_BATCH:
        raise ConversionError(
            f"trt max_batch {value!r}: must be a whole number from 1 to {MAX_BATCH} "
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


# -- checks -------------------------------------------------------------------------------------


def check_graph(path: Path, profile: Mapping[str, Mapping[str, list[int]]]) -> dict[str, Any]:
    """onnx.checker, no control flow, only parser-supported ops, opset in range, every input
    axis covered by `profile`. Raises ConversionError naming the graph and the problem;
    returns the manifest entry."""
    facts = inspect_graph(path)
    name, ops = facts.file, facts.op_types
    if not PARSER_OPSETS[0] <= facts.opset <= PARSER_OPSETS[1]:
        raise ConversionError(
            f"{name}: opset {facts.opset} is outside TensorRT 10's ONNX parser range "
            f"{PARSER_OPSETS[0]}..{PARSER_OPSETS[1]} (re-export with dwconvert --to onnx)"
        )
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
    problems = profile_problems(facts.inputs, profile)
    if problems:
        raise ConversionError(f"{name}: not covered by the optimisation profiles: {'; '.join(problems)}")
    return {
        "file": name,
        "opset": facts.opset,
        "op_types": ops,
        "control_flow": [],
        "unsupported_ops": [],
        "inputs": facts.inputs,
        "outputs": facts.outputs,
    }


def graphs_in(graph_dir: Path) -> tuple[str, ...]:
    """The graphs engines are built from: the three decoding needs, and the alignment graph
    where the export holds one."""
    return export_graphs((Path(graph_dir) / graph_file(DECODER_ALIGN)).is_file())


def check_graphs(graph_dir: Path, info: ModelInfo, max_batch: int) -> list[dict[str, Any]]:
    """`check_graph` on each graph of `graphs_in(graph_dir)`, against the plan's profiles."""
    wanted = profiles(info, max_batch)
    return [check_graph(Path(graph_dir) / graph_file(g), wanted[g]) for g in graphs_in(graph_dir)]


# -- plan and build -------------------------------------------------------------------------------


def build_plan(
    info: ModelInfo,
    precision: str,
    max_batch: int,
    workspace_mib: int,
    checks: list[dict[str, Any]],
    graphs: tuple[str, ...] = GRAPHS,
) -> dict[str, Any]:
    """Everything the engine build needs, as data: the same plan builds the same engines.
    `checks`: `check_graph`'s entries of `graphs`, in that order."""
    settings = PRECISION_SETTINGS[precision]
    wanted = profiles(info, max_batch)
    return {
        "plan_version": PLAN_VERSION,
        "precision": precision,
        "max_batch": max_batch,
        "word_timestamps": DECODER_ALIGN in graphs,
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
            for graph, check in zip(graphs, checks, strict=True)
        },
    }


def write_plan(
    graph_dir: Path, out_dir: Path, info: ModelInfo, precision: str, max_batch: int, workspace_mib: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Check the graphs of `graph_dir`, write the plan into `out_dir`; (graph checks, plan)."""
    checks = check_graphs(graph_dir, info, max_batch)
    plan = build_plan(info, precision, max_batch, workspace_mib, checks, graphs_in(graph_dir))
    (Path(out_dir) / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    return checks, plan


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
    for graph, entry in plan["engines"].items():
        built[graph] = tensorrt_api.build_engine(
            Path(graph_dir) / entry["onnx"], Path(engine_dir) / entry["engine"], engine_spec(plan, graph)
        )
    return {**tensorrt_api.versions(), "engines": built}


# -- the engine cache of onnx directories ---------------------------------------------------------


def default_engine_cache() -> Path:
    from dwkit.bundled import default_cache_dir

    return default_cache_dir() / "trt"


def engines_for_onnx_dir(
    model_dir: Path, manifest: Mapping[str, Any], precision: str, options: Mapping[str, Any], device: str
) -> Path:
    """Build (once) the engines of an onnx directory with the same plan dwconvert --to trt
    writes, into the engine cache (`options["engine_cache"]`); returns their directory."""
    from dwkit.bundled import cache_lock
    from dwkit.converters.base import atomic_output_dir  # a filesystem helper; no converter runs
    from dwkit.runtimes import tensorrt_api

    if manifest.get("precision") != "fp32":
        raise ModelError(
            f"{model_dir}: holds {manifest.get('precision')} onnx graphs; the trt backend builds from fp32 "
            "graphs (convert with --to onnx --precision fp32, or dwconvert --to trt)"
        )
    info = ModelInfo.from_dict(manifest["model_info"])
    max_batch = check_max_batch(options.get("max_batch"))
    workspace_mib = check_workspace(options.get("workspace_mib"))
    here = tensorrt_api.versions(device)
    graphs = graphs_in(model_dir)  # an alignment graph added later builds a new entry
    key_data = [manifest.get("weights_checksum"), precision, max_batch, workspace_mib, here, PLAN_VERSION]
    key_data += [list(graphs)] if graphs != GRAPHS else []  # entries built before it keep their key
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(options.get("engine_cache") or default_engine_cache()).expanduser()
    target = cache / f"{model_dir.name}-{precision}-b{max_batch}-{key}"
    with cache_lock(cache / f".{target.name}.lock"):
        if not (target / BUILD_FACTS).is_file():
            require_tensorrt("the trt backend")
            with atomic_output_dir(target, overwrite=True) as tmp:
                _, plan = write_plan(model_dir, tmp, info, precision, max_batch, workspace_mib)
                built = build_engines(model_dir, plan, tmp)
                (tmp / BUILD_FACTS).write_text(
                    json.dumps({"source": str(model_dir), **built}, indent=2) + "\n"
                )
    return target
