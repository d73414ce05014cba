"""Import an ONNX Whisper export as a transformers checkpoint (`dwconvert --from onnx --to hf`).

For users who hold only an ONNX model: dwkit's own export (`dwconvert --to onnx`) or an
optimum / onnx-community one. The graphs carry every weight as an initializer, but not always
under its parameter name, so each is mapped back from the graph:
- by name: layer norms, biases, convolutions and (dynamo exports) embeddings keep the module's
  parameter name, relative to the exported module (`layers.0.fc1.bias` in optimum's encoder,
  `decoder.layers.0.fc1.bias` in dwkit's decoder): matched to the one full transformers name
  that ends with it;
- by structure: Linear weights are stored transposed under a generated name (`onnx::MatMul_983`,
  `val_50`) and read by a MatMul whose module scope is recorded (legacy exporter: the node name
  `/model/decoder/layers.0/self_attn/q_proj/MatMul`; dynamo: the `pkg.torch.onnx.name_scopes`
  metadata), so the weight is that module's, transposed back;
- what is left (positional tables renamed by the exporter) by its shape, when exactly one
  unmapped parameter and one unmapped initializer have it.
Every parameter must be found with its shape, or nothing is written. The json files (config,
generation config, tokenizer, preprocessor) are copied as they are, so an fp32 round trip
hf -> onnx -> hf gives back the original checkpoint bit for bit. fp16 graphs are upcast to
float32 (exact, but the weights stay fp16-rounded). Quantised graphs (int8, uint8, 4-bit) are
refused: their float weights are gone, and dequantising would write a checkpoint that looks
like fp32 but is not; import the fp32 or fp16 variant instead.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters.base import ConversionResult, atomic_output_dir, library_versions
from dwkit.converters.hf_files import TOKENIZER_FILES, WEIGHTS_NAME
from dwkit.errors import ConversionError, ModelError
from dwkit.manifest import read_manifest, weights_checksum, write_manifest
from dwkit.onnx_graphs import DECODER_INIT, ENCODER, graph_file

# The json/text files a transformers Whisper checkpoint carries, copied when present.
SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    *TOKENIZER_FILES,
    "normalizer.json",
)
QUANTISED_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear", "MatMulNBits", "QLinearMatMul"}
QUANTISED_PRECISIONS = ("int8", "uint8", "q4", "q4f16", "bnb4")


@dataclass(frozen=True)
class OnnxSource:
    """Where an export keeps its json files and which graph holds each half of the model."""

    config_dir: Path
    encoder: Path
    decoder: Path  # a graph with every decoder weight (decoder_init, decoder_model or merged)
    precision: str
    kind: str  # "dwkit" or "optimum"


def find_source(src_dir: Path, precision: str | None = None) -> OnnxSource:
    """dwkit's export (its manifest names the precision) or an optimum one (`precision`, default fp32)."""
    from dwkit.runtimes import onnx_optimum

    manifest = read_manifest(src_dir) if src_dir.is_dir() else None
    if manifest and manifest.get("format") == "onnx":
        stored = str(manifest.get("precision", "fp32"))
        if precision not in (None, stored):
            raise ConversionError(f"{src_dir} holds {stored} graphs, not {precision}")
        found = OnnxSource(
            src_dir, src_dir / graph_file(ENCODER), src_dir / graph_file(DECODER_INIT), stored, "dwkit"
        )
    elif src_dir.is_dir() and onnx_optimum.is_optimum_export(src_dir):
        wanted = precision or "fp32"
        _refuse_quantised(src_dir, wanted)
        try:
            files = onnx_optimum.resolve_files(src_dir, wanted)
        except ModelError as exc:
            raise ConversionError(str(exc)) from exc
        found = OnnxSource(src_dir, files.encoder, files.decoder, wanted, "optimum")
    else:
        raise ConversionError(
            f"{src_dir}: not an ONNX Whisper export (dwkit's dwkit.json with format onnx, or optimum's "
            "encoder_model.onnx beside config.json)"
        )
    _refuse_quantised(src_dir, found.precision)
    for path in (found.encoder, found.decoder):
        if not path.is_file():
            raise ConversionError(f"{path}: missing (an incomplete export?)")
    return found


def _refuse_quantised(src_dir: Path, precision: str) -> None:
    if precision in QUANTISED_PRECISIONS:
        raise ConversionError(
            f"{src_dir}: {precision} graphs hold quantised weights, not the float ones a transformers "
            "checkpoint needs; import the fp32 (or fp16) variant (--precision fp32)"
        )


def _expected_parameters(config_dir: Path) -> tuple[dict[str, tuple[int, ...]], bool]:
    """transformers' parameter names and shapes for this config (built on the meta device: no memory)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    try:
        config = WhisperConfig.from_pretrained(str(config_dir))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{config_dir / 'config.json'}: not a readable Whisper config ({exc})") from exc
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    return shapes, bool(getattr(config, "tie_word_embeddings", True))


def _node_scope(node: Any) -> str | None:
    """The module path an exporter recorded for a node (see the module docstring)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return str(scopes[-2]) if len(scopes) >= 2 else None
    if node.name.startswith("/"):
        parts = node.name.strip("/").split("/")
        return ".".join(parts[:-1]) or None
    return None


def _graphs(graph: Any) -> Iterator[Any]:
    """A graph and its subgraphs (a merged decoder keeps weights in its If branches)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.g.node or attribute.g.initializer:
                yield from _graphs(attribute.g)


def _candidates(path: Path) -> list[tuple[np.ndarray, list[tuple[str, bool]]]]:
    """Every float initializer of one graph file (float32) with the parameter names it may hold."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf and onnx raise many types for a damaged file
        raise ConversionError(f"{path}: onnx could not read it ({exc})") from exc
    found: list[tuple[np.ndarray, list[tuple[str, bool]]]] = []
    for graph in _graphs(model.graph):
        quantised = QUANTISED_OPS & {node.op_type for node in graph.node}
        if quantised:
            raise ConversionError(
                f"{path}: holds quantised weights ({', '.join(sorted(quantised))}); import the fp32 (or fp16) variant"
            )
        readers: dict[str, list[Any]] = {}
        for node in graph.node:
            for position, name in enumerate(node.input):
                readers.setdefault(name, []).append((node, position))
        for tensor in graph.initializer:
            array = numpy_helper.to_array(tensor)
            if not np.issubdtype(array.dtype, np.floating) or array.ndim == 0:
                continue
            array = array.astype(np.float32, copy=False)
            names = []
            for alias in _aliases(tensor.name, readers):
                names += _parameter_names(alias, readers.get(alias, []))
            found.append((array, names))
    return found


def _aliases(name: str, readers: dict[str, list[Any]]) -> list[str]:
    """`name` and the outputs of Identity nodes that copy it: optimum's weight de-duplication
    keeps one of several equal tensors and feeds the others' names from it through Identity."""
    names = [name]
    for current in names:
        names += [node.output[0] for node, _ in readers.get(current, []) if node.op_type == "Identity"]
    return names


# (op, input position) -> (parameter, stored transposed) of the module in the node's scope.
# One initializer may have several readers: exporters share identical tensors (a random
# model's zero biases and unit layer-norm weights), so each reader names one parameter.
READER_PARAMETERS = {
    ("MatMul", 1): ("weight", True),
    ("Conv", 1): ("weight", False),
    ("Conv", 2): ("bias", False),
    ("LayerNormalization", 1): ("weight", False),
    ("LayerNormalization", 2): ("bias", False),
    ("Add", 0): ("bias", False),
    ("Add", 1): ("bias", False),
    ("Gather", 0): ("weight", False),
}


def _parameter_names(name: str, readers: list[Any]) -> list[tuple[str, bool]]:
    """(relative parameter name, stored transposed) of each parameter an initializer holds."""
    names = [(name, False)] if name.endswith((".weight", ".bias")) else []
    for node, position in readers:
        scope = _node_scope(node)
        kind = READER_PARAMETERS.get((node.op_type, position))
        if node.op_type == "Gemm" and position == 1:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            kind = ("weight", not trans_b)
        if scope and kind:
            names.append((f"{scope}.{kind[0]}", kind[1]))
    return names


def state_dict_from_graphs(source: OnnxSource) -> dict[str, np.ndarray]:
    """The transformers state dict recovered from the encoder and decoder graphs."""
    expected, tied = _expected_parameters(source.config_dir)
    state: dict[str, np.ndarray] = {}
    for path, side in (
        (source.encoder, ("model.encoder.",)),
        (source.decoder, ("model.decoder.", "proj_out.")),
    ):
        wanted = {n: s for n, s in expected.items() if n.startswith(side)}
        unnamed = []
        for array, names in _candidates(path):
            placed = False
            for relative, transposed in names:
                value = array.T if transposed else array
                matches = [n for n in wanted if n == relative or n.endswith("." + relative)]
                if len(matches) == 1 and value.shape == wanted[matches[0]]:
                    state.setdefault(matches[0], value)
                    placed = True
            if not placed:
                unnamed.append(array)
        if "proj_out.weight" in state and "model.decoder.embed_tokens.weight" not in state:
            state["model.decoder.embed_tokens.weight"] = state["proj_out.weight"]  # dwkit keeps the tied one
        left = [n for n in wanted if n not in state and not (tied and n == "proj_out.weight")]
        for name in left:
            fits = [a for a in unnamed if a.shape == wanted[name]]
            if len(fits) == 1 and sum(wanted[n] == wanted[name] for n in left) == 1:
                state[name] = fits[0]
    missing = [n for n in expected if n not in state and not (tied and n == "proj_out.weight")]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ConversionError(
            f"{source.config_dir}: could not find {shown} in {source.encoder.name} / {source.decoder.name} "
            "(not a Whisper export of this config?)"
        )
    if tied:
        state.pop("proj_out.weight", None)
    return {name: np.ascontiguousarray(state[name]) for name in expected if name in state}


def import_onnx(
    src_dir: Path, out_dir: Path, *, precision: str | None = None, overwrite: bool = False
) -> ConversionResult:
    """Write a transformers checkpoint recovered from the ONNX export in `src_dir`; it appears
    at `out_dir` only when complete."""
    from safetensors.numpy import save_file

    from dwkit.model_info import ModelInfo

    src_dir = Path(src_dir).expanduser()
    source = find_source(src_dir, precision)
    state = state_dict_from_graphs(source)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        for name in SIDE_FILES:
            if (source.config_dir / name).is_file():
                shutil.copy2(source.config_dir / name, tmp / name)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        del state
        manifest = {
            "format": "hf",
            "precision": "fp32",
            "source": {
                "kind": f"onnx-{source.kind}",
                "path": str(src_dir.resolve()),
                "precision": source.precision,
            },
            "tool": "dwkit.converters.onnx_import",
            "weights_checksum": weights_checksum(tmp),
            "library_versions": library_versions("onnx", "transformers", "safetensors", "numpy"),
            "model_info": ModelInfo.from_hf_dir(tmp).to_dict(),
        }
        write_manifest(tmp, manifest)
        files = sorted(p.name for p in tmp.iterdir())
    return ConversionResult(Path(out_dir).expanduser().resolve(), "hf", "fp32", manifest, files=files)
