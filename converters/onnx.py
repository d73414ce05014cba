"""transformers checkpoint -> ONNX model directory (onnxruntime; TensorRT builds from it).

Three graphs (`onnx_graphs`: encoder, decoder_init, decoder_step) exported by torch.onnx's
dynamo exporter (`onnx_export`), then, per precision:
- fp32: as exported. Validated against transformers: first-step logits within 1e-3 (dwkit.compare.gate)
  and identical greedy tokens, or the conversion fails and nothing is written.
- fp16: onnxruntime's own `convert_float_to_float16` with float32 inputs/outputs
  (`keep_io_types`), LayerNormalization and Softmax kept in float32 (their reductions
  overflow or lose the small probabilities in half precision). onnxconverter-common's
  converter produced decoders that did not load.
- int8: `quantize_dynamic` of MatMul/Gemm weights only (quantising the embedding Gather too
  shrank the files but made each decoder step 2.4x slower), one scale per output channel:
  on tiny.en's 2-minute espeak benchmark per-tensor scales gave WER 0.043 against the fp32
  transcript, per-channel 0.010, at the same speed. The output projection shares its weight
  with the embedding through a Transpose, which the quantiser skips; it gets its own
  transposed copy first, so the largest decoder matmul is quantised as well.
fp16 and int8 are validated and recorded, not gated: they round weights by design, and WER
is their measure.

The output directory holds the graphs (+ `<graph>.onnx_data` where weights pass 1 GiB),
the tokenizer and config files the shared pipeline reads, and `dwkit.json`. It is written
in a temporary sibling and renamed into place only when complete.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters.base import (
    ConversionResult,
    atomic_output_dir,
    copy_if_present,
    library_versions,
    reading_weights,
    record_validation,
    require_checkpoint,
)
from dwkit.converters.onnx_graphs import (
    BATCH,
    DECODER_INIT,
    DECODER_STEP,
    DEFAULT_OPSET,
    GRAPHS,
    INPUT_IDS,
    MIN_OPSET,
    PAST,
    PROMPT,
    data_file,
    graph_file,
    graph_io,
)
from dwkit.errors import ConversionError
from dwkit.manifest import read_manifest, weights_checksum, write_manifest
from dwkit.model_info import ModelInfo

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
# Validation gate against transformers fp32 (optimum's Whisper tolerance is also 1e-3).
# Measured on tiny.en and base: fp32 logits ~3e-5, tokens identical.
GATED = ("fp32",)
FP16_KEEP_FLOAT32 = ("LayerNormalization", "Softmax")
INT8_OPS = ("MatMul", "Gemm")
SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",  # the shared tokenizer reads clean_up_tokenization_spaces from it
    "preprocessor_config.json",
    "generation_config.json",
    "config.json",  # the architecture, for TensorRT builds and for people reading the directory
)
# Conversion options this module takes (beyond validate/overwrite).
OPTIONS = ("opset", "external_data", "fp32_export", "threads", "progress")
STAGING = ".fp32-export"


def convert(
    source: Path,
    out_dir: str | Path,
    precision: str = DEFAULT_PRECISION,
    *,
    validate: bool = True,
    overwrite: bool = False,
    **opts: Any,
) -> ConversionResult:
    """Write `source` (a transformers Whisper checkpoint) as an ONNX model directory.

    Options: `opset` (default 18, at least 17); `external_data` (True/False; default: only
    for graphs whose weights pass 1 GiB); `fp32_export` (the directory of an fp32 onnx
    conversion of the same checkpoint: fp16/int8 start from its graphs instead of exporting
    again); `threads` (CPU threads for validation, 0 = library default); `progress` (a tqdm
    bar over the stages on stderr, default True).
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown onnx precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConversionError(
            f"onnx conversion does not take {', '.join(unknown)}; it takes {', '.join(OPTIONS)}"
        )
    opset = int(opts.get("opset", DEFAULT_OPSET))
    if opset < MIN_OPSET:
        raise ConversionError(
            f"onnx opset {opset}: Whisper's LayerNormalization needs opset {MIN_OPSET} or newer"
        )
    external = opts.get("external_data")
    source = Path(source)
    info = ModelInfo.from_hf_dir(source)
    require_checkpoint(source)
    source_checksum = weights_checksum(source)
    reuse = Path(opts["fp32_export"]) if opts.get("fp32_export") else None
    if reuse is not None:
        _check_reusable(reuse, source_checksum, opset)

    stages = [] if reuse else ["load transformers model", *(f"export {g}" for g in GRAPHS)]
    stages += [f"{precision} {g}" for g in GRAPHS] if precision != "fp32" else []
    stages += ["check graphs"] + (["validate against transformers"] if validate else [])
    timings: dict[str, float] = {}
    with (
        atomic_output_dir(out_dir, overwrite=overwrite) as tmp,
        _stages(stages, opts.get("progress", True)) as stage,
    ):
        exported = tmp if precision == "fp32" else tmp / STAGING
        exported.mkdir(exist_ok=True)
        if reuse is not None:
            _copy_graphs(reuse, exported)
        else:
            with stage("load transformers model", timings), reading_weights(source):
                from dwkit.converters.onnx_export import export_graph, load_model

                model = load_model(source)
            for graph in GRAPHS:
                with stage(f"export {graph}", timings):
                    export_graph(model, graph, exported / graph_file(graph), opset, external)
            del model
        if precision != "fp32":
            for graph in GRAPHS:
                with stage(f"{precision} {graph}", timings):
                    _convert_precision(exported, tmp, graph, precision, external)
            shutil.rmtree(exported)
        with stage("check graphs", timings):
            graphs = [_check_graph(tmp, graph, info.decoder_layers) for graph in GRAPHS]
        copy_if_present(source, tmp, SIDE_FILES)
        manifest: dict[str, Any] = {
            "format": "onnx",
            "precision": precision,
            "source": {**source_id(source), "weights_checksum": source_checksum},
            "tool": "dwkit.converters.onnx",
            "weights_checksum": weights_checksum(tmp),
            "opset": opset,
            "library_versions": {
                **library_versions("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "onnx-ir"),
                "opset": str(opset),
            },
            "graphs": graphs,
            "model_info": info.to_dict(),
            "fp32_export": str(reuse.resolve()) if reuse else None,
            "conversion_seconds": timings,
            "validation": None,
        }
        write_manifest(tmp, manifest)
        validation = None
        if validate:
            with stage("validate against transformers", timings):
                validation = validate_model(source, tmp, precision, threads=int(opts.get("threads", 0)))
            record_validation(tmp, manifest, validation, "onnx", precision)
        files = sorted(p.name for p in tmp.iterdir())
    out = Path(out_dir).expanduser().resolve()
    return ConversionResult(out, "onnx", precision, {"manifest_version": 1, **manifest}, validation, files)


def _check_reusable(reuse: Path, source_checksum: str, opset: int) -> None:
    manifest = read_manifest(reuse) if reuse.is_dir() else None
    if not manifest or manifest.get("format") != "onnx" or manifest.get("precision") != "fp32":
        raise ConversionError(f"fp32_export {reuse}: not an fp32 onnx model directory")
    if (manifest.get("source") or {}).get("weights_checksum") != source_checksum:
        raise ConversionError(f"fp32_export {reuse}: was converted from other weights than this source")
    if manifest.get("opset") != opset:
        raise ConversionError(f"fp32_export {reuse}: has opset {manifest.get('opset')}, not {opset}")


def _copy_graphs(src: Path, dst: Path) -> None:
    for graph in GRAPHS:
        for name in (graph_file(graph), data_file(graph)):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)


# -- precision ---------------------------------------------------------------------------------


def _convert_precision(
    src_dir: Path, dst_dir: Path, graph: str, precision: str, external: bool | None
) -> None:
    import onnx

    src = src_dir / graph_file(graph)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(src)))
        model.convert_float_to_float16(
            use_symbolic_shape_infer=False,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT32],
        )
        model.topological_sort()  # the converter appends its input casts at the end
        save_graph(model.model, dst_dir, graph, external)
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        model = onnx.load(str(src))
        _untie_projection(model)
        staged = src_dir / f"{graph}.int8.onnx"
        with _root_logging_above_warnings():  # it advises "pre-processing" on every call
            quantize_dynamic(
                model,
                staged,
                op_types_to_quantize=list(INT8_OPS),
                weight_type=QuantType.QInt8,
                per_channel=True,
                use_external_data_format=True,  # any size; re-saved below with our file names
            )
        del model
        save_graph(onnx.load(str(staged)), dst_dir, graph, external)
    else:  # pragma: no cover - convert() checked the name
        raise ConversionError(f"no {precision} conversion")


@contextmanager
def _root_logging_above_warnings() -> Iterator[None]:
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _untie_projection(model: Any) -> None:
    """Give MatMuls that read a transposed 2-D initializer their own transposed copy.

    The exporter keeps the tied embedding once and feeds the output projection through a
    Transpose; `quantize_dynamic` only quantises MatMuls whose weight is an initializer.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    copies: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in producers:
            continue
        transpose = producers[node.input[1]]
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), [1, 0])
        weight = inits.get(transpose.input[0]) if transpose.op_type == "Transpose" else None
        if weight is None or len(weight.dims) != 2 or perm != [1, 0]:
            continue
        if weight.name not in copies:
            name = f"{weight.name}.transposed"
            array = np.ascontiguousarray(numpy_helper.to_array(weight).T)
            model.graph.initializer.append(numpy_helper.from_array(array, name))
            copies[weight.name] = name
        node.input[1] = copies[weight.name]
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "Transpose" and not set(n.output) & used]
    for node in dead:
        model.graph.node.remove(node)


def save_graph(model: Any, out_dir: Path, graph: str, external: bool | None) -> None:
    """Save a ModelProto as `graph`'s file, its weights in `data_file(graph)` when external."""
    import onnx

    from dwkit.converters.onnx_export import EXTERNAL_DATA_BYTES

    if external is None:
        external = sum(_tensor_bytes(t) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    path = out_dir / graph_file(graph)
    (out_dir / data_file(graph)).unlink(missing_ok=True)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_file(graph),
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def _tensor_bytes(tensor: Any) -> int:
    if tensor.raw_data:
        return len(tensor.raw_data)
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    return int(np.prod(tensor.dims)) * 4


# -- checks and description -----------------------------------------------------------------


def _check_graph(model_dir: Path, graph: str, decoder_layers: int) -> dict[str, Any]:
    """onnx.checker, no `If` node, dwkit's names and dynamic axes; returns the manifest entry."""
    import onnx

    path = model_dir / graph_file(graph)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"{graph_file(graph)}: onnx.checker rejects it ({exc})") from exc
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ConversionError(f"{graph_file(graph)}: opset {opset} < {MIN_OPSET}")
    ops = _op_types(model)
    if "If" in ops:
        raise ConversionError(f"{graph_file(graph)}: has an If node (TensorRT needs plain graphs)")
    inputs = [describe_io(v) for v in model.graph.input]
    outputs = [describe_io(v) for v in model.graph.output]
    expected = graph_io(graph, decoder_layers)
    if (
        tuple(v["name"] for v in inputs) != expected.inputs
        or tuple(v["name"] for v in outputs) != expected.outputs
    ):
        raise ConversionError(f"{graph_file(graph)}: inputs/outputs are not {expected}")
    for value in inputs:
        if value["shape"][0] != BATCH:
            raise ConversionError(f"{graph_file(graph)}: input {value['name']} has a fixed batch axis")
    wanted = {DECODER_INIT: (INPUT_IDS, 1, PROMPT), DECODER_STEP: ("past_key.0", 2, PAST)}.get(graph)
    if wanted and next(v for v in inputs if v["name"] == wanted[0])["shape"][wanted[1]] != wanted[2]:
        raise ConversionError(f"{graph_file(graph)}: {wanted[0]} has a fixed {wanted[2]} axis")
    data = model_dir / data_file(graph)
    return {
        "name": graph,
        "file": graph_file(graph),
        "external_data": data.name if data.is_file() else None,
        "bytes": path.stat().st_size + (data.stat().st_size if data.is_file() else 0),
        "opset": opset,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_axes": {
            v["name"]: {str(i): d for i, d in enumerate(v["shape"]) if isinstance(d, str)}
            for v in inputs + outputs
        },
        "op_types": dict(sorted(ops.items())),
    }


def _op_types(model: Any) -> dict[str, int]:
    """Op counts of the graph, its functions and any subgraph (an If hides its branches there)."""
    import onnx

    counts: dict[str, int] = {}

    def visit(nodes: Any) -> None:
        for node in nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g.node)
                for sub in attr.graphs:
                    visit(sub.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return counts


def describe_io(value: Any) -> dict[str, Any]:
    import onnx

    tensor = value.type.tensor_type
    shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tensor.shape.dim]
    return {
        "name": value.name,
        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
        "shape": shape,
    }


# -- validation ---------------------------------------------------------------------------------


def source_id(source: Path) -> dict[str, str]:
    """The source as a user would name it: its path (and hub id + revision of a hub snapshot)."""
    import re

    found = {"path": str(Path(source).resolve())}
    match = re.search(r"models--([^/]+?)--([^/]+)/snapshots/([0-9a-f]+)", Path(source).as_posix())
    if match:
        found["hub_id"] = f"{match[1]}/{match[2]}"
        found["revision"] = match[3]
    return found


def validation_mel(n_mels: int) -> tuple[np.ndarray, str]:
    """The shared fixed validation input, with a description for the manifest."""
    from dwkit.compare import validation_mel as shared_mel

    return shared_mel(n_mels), "dwkit/data/demo.flac (first 30 s)"


def validate_model(source: Path, model_dir: Path, precision: str, threads: int = 0) -> dict[str, Any]:
    """Load the written directory in onnxruntime and compare it with transformers fp32."""
    from dwkit.compare import compare_backends, gate
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.hf import HFBackend
    from dwkit.runtimes.onnx import OnnxBackend

    info = ModelInfo.from_hf_dir(source)
    reference = HFBackend.from_model_dir(source, RuntimeConfig(threads=threads))
    candidate = OnnxBackend.from_model_dir(model_dir, RuntimeConfig(threads=threads))
    mel, described = validation_mel(info.n_mels)
    started = time.perf_counter()
    report = compare_backends(reference, candidate, mel).to_dict()
    return {
        **gate(report, precision in GATED),
        "reference": "hf fp32",
        "runtime": "onnxruntime CPUExecutionProvider",
        "input": described,
        "seconds": round(time.perf_counter() - started, 2),
        **report,
    }


# -- progress -----------------------------------------------------------------------------------


@contextmanager
def _stages(names: list[str], enabled: bool) -> Iterator[Any]:
    """A tqdm bar over the conversion stages on stderr; full-size exports take minutes."""
    from tqdm import tqdm

    bar = tqdm(total=len(names), desc="onnx", unit="stage", file=sys.stderr, disable=not enabled, leave=False)

    @contextmanager
    def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
        bar.set_description(f"onnx: {name}")
        started = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - started, 2)
        bar.update(1)

    try:
        yield stage
    finally:
        bar.close()
