"""transformers checkpoint -> ONNX model directory (onnxruntime; TensorRT builds from it).

Three graphs (`onnx_graphs`: encoder, decoder_init, decoder_step) exported by torch.onnx's
dynamo exporter (`onnx_export`), then, per precision:
- fp32: as exported. Validated against transformers: first-step logits within 1e-3 and
  identical greedy tokens ([validation.onnx] in dwkit/data/parity_thresholds.toml), or the
  conversion fails and nothing is written.
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

`word_timestamps=True` (`dwconvert --to onnx --word-timestamps`) adds a fourth graph,
`decoder_align.onnx` (`onnx_graphs`): the decoder without a cache, returning the logits and
every layer's cross-attention weights, which the runtime's `cross_attentions` runs for word
timestamps. The three decoding graphs are the same with or without it; the manifest records
`"word_timestamps"` either way. With `fp32_export`, graphs the reused directory lacks (its
alignment graph) are exported, the others copied.

The output directory holds the graphs (+ `<graph>.onnx_data` where weights pass 1 GiB),
the tokenizer and config files the shared pipeline reads, and `dwkit.json`. It is written
in a temporary sibling and renamed into place only when complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters import template
from dwkit.converters.base import reading_weights, release_freed_memory
from dwkit.errors import ConversionError
from dwkit.manifest import read_manifest, weights_checksum
from dwkit.onnx_check import inspect_graph
from dwkit.onnx_graphs import (
    BATCH,
    DECODER_ALIGN,
    DECODER_INIT,
    DECODER_STEP,
    DEFAULT_OPSET,
    INPUT_IDS,
    MIN_OPSET,
    PAST,
    PROMPT,
    data_file,
    export_graphs,
    graph_file,
    graph_io,
)

# Validation: fp32 is gated ([validation.onnx] in dwkit/data/parity_thresholds.toml).
FORMAT = template.FormatSpec(
    name="onnx",
    module=__name__,
    extra="onnx",
    precisions=("fp32", "fp16", "int8"),
    default_precision="fp32",
    requires=("onnx", "onnxruntime", "onnxscript", "torch", "transformers"),
    options=("opset", "external_data", "fp32_export", "word_timestamps", "threads", "progress"),
    libraries=("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "onnx-ir"),
    side_files=(
        "tokenizer.json",
        "tokenizer_config.json",  # the shared tokenizer reads clean_up_tokenization_spaces from it
        "preprocessor_config.json",
        "generation_config.json",
        "config.json",  # the architecture, for TensorRT builds and for people reading the directory
    ),
)
FP16_KEEP_FLOAT32 = ("LayerNormalization", "Softmax")
# The alignment graph's softmax weights against transformers' eager ones, gated where the
# logits are (fp32; measured ~1e-6 on tiny.en), recorded otherwise.
ALIGN_ATOL = 1e-3
ALIGN_TEXT_TOKENS = 32  # of the reference's greedy text, teacher-forced on the validation input
INT8_OPS = ("MatMul", "Gemm")
STAGING = ".fp32-export"


def check_options(
    source: Path, precision: str, opts: Mapping[str, Any], source_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`opset` (default 18, at least 17); `external_data` (True/False; default: only for graphs
    whose weights pass 1 GiB); `fp32_export` (the directory of an fp32 onnx conversion of the
    same checkpoint: fp16/int8 start from its graphs instead of exporting again); `threads`
    (CPU threads for validation, 0 = library default); `word_timestamps` (also export the
    alignment graph, default False); `progress` (a tqdm bar over the stages on stderr,
    default True)."""
    opset = int(opts.get("opset", DEFAULT_OPSET))
    if opset < MIN_OPSET:
        raise ConversionError(
            f"onnx opset {opset}: Whisper's LayerNormalization needs opset {MIN_OPSET} or newer"
        )
    word_timestamps = opts.get("word_timestamps", False)
    if not isinstance(word_timestamps, bool):
        raise ConversionError(f"onnx word_timestamps {word_timestamps!r}: must be true or false")
    reuse = Path(opts["fp32_export"]) if opts.get("fp32_export") else None
    if reuse is not None:
        _check_reusable(reuse, weights_checksum(source), opset)
    return {
        "opset": opset,
        "external": opts.get("external_data"),
        "reuse": reuse,
        "graphs": export_graphs(word_timestamps),
        "threads": int(opts.get("threads", 0)),
    }


def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> template.Written:
    """Export (or copy) the fp32 graphs, convert them to the precision, check them."""
    precision, options = job.precision, job.options
    reuse, external, info = options["reuse"], options["external"], job.info
    assert info is not None  # onnx converts checkpoints only
    wanted = options["graphs"]
    copied = [g for g in wanted if (reuse / graph_file(g)).is_file()] if reuse else []
    missing = [g for g in wanted if g not in copied]
    planned = ["load transformers model", *(f"export {g}" for g in missing)] if missing else []
    planned += [f"{precision} {g}" for g in wanted] if precision != "fp32" else []
    stages.expect([*planned, "check graphs", *(["validate"] if job.validate else [])])
    exported = out if precision == "fp32" else out / STAGING
    exported.mkdir(exist_ok=True)
    if reuse is not None:
        _copy_graphs(reuse, copied, exported)
    if missing:
        _export_graphs(job.source, exported, missing, options["opset"], external, stages)
    if precision != "fp32":
        for graph in wanted:
            with stages(f"{precision} {graph}"):
                _convert_precision(exported, out, graph, precision, external)
        shutil.rmtree(exported)
    with stages("check graphs"):
        graphs = [check_graph(out, graph, info.decoder_layers) for graph in wanted]
    fields = {
        "opset": options["opset"],
        "graphs": graphs,
        "word_timestamps": DECODER_ALIGN in wanted,
        "fp32_export": str(reuse.resolve()) if reuse else None,
    }
    return template.Written(info, fields, versions={"opset": str(options["opset"])})


def _export_graphs(
    source: Path, out: Path, graphs: list[str], opset: int, external: bool | None, stages: template.Stages
) -> None:
    with stages("load transformers model"), reading_weights(source):
        from dwkit.converters.onnx_export import export_graph, load_model

        model = load_model(source)
    for graph in graphs:
        with stages(f"export {graph}"):
            export_graph(model, graph, out / graph_file(graph), opset, external)
            release_freed_memory()  # the exporter's copies of this graph's weights
    del model
    release_freed_memory()


def _check_reusable(reuse: Path, source_checksum: str, opset: int) -> None:
    manifest = read_manifest(reuse) if reuse.is_dir() else None
    if not manifest or manifest.get("format") != "onnx" or manifest.get("precision") != "fp32":
        raise ConversionError(f"fp32_export {reuse}: not an fp32 onnx model directory")
    if (manifest.get("source") or {}).get("weights_checksum") != source_checksum:
        raise ConversionError(f"fp32_export {reuse}: was converted from other weights than this source")
    if manifest.get("opset") != opset:
        raise ConversionError(f"fp32_export {reuse}: has opset {manifest.get('opset')}, not {opset}")


def _copy_graphs(src: Path, graphs: list[str], dst: Path) -> None:
    for graph in graphs:
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


# -- checks and validation -----------------------------------------------------------------


def check_graph(model_dir: Path, graph: str, decoder_layers: int) -> dict[str, Any]:
    """onnx.checker, no `If` node, dwkit's names and dynamic axes; returns the manifest entry."""
    path = model_dir / graph_file(graph)
    facts = inspect_graph(path)
    name = facts.file
    if facts.opset < MIN_OPSET:
        raise ConversionError(f"{name}: opset {facts.opset} < {MIN_OPSET}")
    if "If" in facts.op_types:
        raise ConversionError(f"{name}: has an If node (TensorRT needs plain graphs)")
    inputs, outputs = facts.inputs, facts.outputs
    expected = graph_io(graph, decoder_layers)
    if (
        tuple(v["name"] for v in inputs) != expected.inputs
        or tuple(v["name"] for v in outputs) != expected.outputs
    ):
        raise ConversionError(f"{name}: inputs/outputs are not {expected}")
    for value in inputs:
        if value["shape"][0] != BATCH:
            raise ConversionError(f"{name}: input {value['name']} has a fixed batch axis")
    wanted = {
        DECODER_INIT: (INPUT_IDS, 1, PROMPT),
        DECODER_ALIGN: (INPUT_IDS, 1, PROMPT),
        DECODER_STEP: ("past_key.0", 2, PAST),
    }.get(graph)
    if wanted and next(v for v in inputs if v["name"] == wanted[0])["shape"][wanted[1]] != wanted[2]:
        raise ConversionError(f"{name}: {wanted[0]} has a fixed {wanted[2]} axis")
    data = model_dir / data_file(graph)
    return {
        "name": graph,
        "file": name,
        "external_data": data.name if data.is_file() else None,
        "bytes": path.stat().st_size + (data.stat().st_size if data.is_file() else 0),
        "opset": facts.opset,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_axes": {
            v["name"]: {str(i): d for i, d in enumerate(v["shape"]) if isinstance(d, str)}
            for v in inputs + outputs
        },
        "op_types": facts.op_types,
    }


def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any]:
    """Load the written directory in onnxruntime and compare it with transformers fp32.

    The reference runs first and is freed before onnxruntime loads the graphs: holding both
    was the peak of a full-size distil-large-v3.5 conversion (9.0 GB of 3 GB torch weights plus
    4.3 GB of onnxruntime sessions; benchmarks/results/onnx_export_memory.md).
    """
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.onnx import OnnxBackend

    threads = job.options["threads"]
    reference = _Replay(template.hf_reference(job.source, threads))
    template.numeric_validation(reference, reference, FORMAT, job.precision)  # records its outputs
    reference.release()
    candidate = OnnxBackend.from_model_dir(model_dir, RuntimeConfig(threads=threads))
    result = template.numeric_validation(
        reference, candidate, FORMAT, job.precision, runtime="onnxruntime CPUExecutionProvider"
    )
    if DECODER_ALIGN in job.options["graphs"]:
        text = [t for t in result["reference_tokens"] if t < candidate.info.eot][:ALIGN_TEXT_TOKENS]
        result["alignment"] = alignment_validation(job.source, candidate, text)
        if result["gated"] and result["alignment"]["cross_attention_max_abs"] > ALIGN_ATOL:
            result["passed"] = False
            result["failures"].append(
                f"alignment graph cross-attention max abs diff {result['alignment']['cross_attention_max_abs']:.3g} "
                f"> {ALIGN_ATOL}"
            )
    return result


def alignment_validation(source: Path, candidate: Any, text: list[int]) -> dict[str, Any]:
    """The alignment graph's weights and logits for <|startoftranscript|> <|notimestamps|> +
    `text` + <|endoftext|> on the validation input, against transformers' eager attention
    (every head of every decoder layer)."""
    import torch

    from dwkit.compare import validation_mel
    from dwkit.converters.onnx_export import load_model

    info = candidate.info
    mel = validation_mel(info.n_mels)
    tokens = [info.sot, info.no_timestamps, *text, info.eot]
    heads = [(layer, head) for layer in range(info.decoder_layers) for head in range(info.decoder_heads)]
    weights, logits = candidate.cross_attentions(candidate.encode(mel), 0, tokens, heads)
    model = load_model(source)
    with torch.no_grad():
        out = model(
            input_features=torch.as_tensor(mel),
            decoder_input_ids=torch.tensor([tokens]),
            output_attentions=True,
        )
    expected = torch.cat([layer[0] for layer in out.cross_attentions]).numpy()
    return {
        "tokens": len(tokens),
        "heads": len(heads),
        "cross_attention_max_abs": float(np.abs(weights - expected).max()),
        "logits_max_abs": float(np.abs(logits - out.logits[0].numpy()).max()),
        "atol": ALIGN_ATOL,
    }


class _Replay:
    """A backend's answers, recorded once and replayed: compare_backends calls each method once
    per side with the same fixed input, so comparing the backend with itself runs every
    reference call once, and the backend can then be freed before the candidate loads."""

    RECORDED = ("encode", "encoder_array", "next_token_logits", "generate")

    def __init__(self, backend: Any):
        self.backend: Any = backend
        self.info = backend.info
        self.answers: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in _Replay.RECORDED:
            raise AttributeError(name)

        def answer(*args: Any, **kwargs: Any) -> Any:
            if name not in self.answers:
                self.answers[name] = getattr(self.backend, name)(*args, **kwargs)
            return self.answers[name]

        return answer

    def release(self) -> None:
        """Free the backend (its weights) and hand the memory back to the OS."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
        self.backend = None
        release_freed_memory()
