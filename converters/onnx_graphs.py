"""The three ONNX graphs of a Whisper export, described as data.

The exporter (`onnx_export`), the onnx runtime and the TensorRT builder all read the graph
names, file names and input/output names from here, so they cannot drift apart:

- encoder:      input_features [batch, n_mels, 3000] -> encoder_hidden_states [batch, 1500, d_model]
- decoder_init: input_ids [batch, prompt], encoder_hidden_states
                -> logits [batch, prompt, vocab], present_{key,value}.N [batch, heads, prompt, head_dim],
                   cross_{key,value}.N [batch, heads, 1500, head_dim]
- decoder_step: input_ids [batch, 1], past_{key,value}.N [batch, heads, past, head_dim], cross_{key,value}.N
                -> logits [batch, 1, vocab], present_{key,value}.N [batch, heads, past + 1, head_dim]

Separate graphs (no `If` node choosing between a first and a later step) keep each one a
plain feed-forward network, which TensorRT builds with one optimisation profile each.
Importing this module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODER = "encoder"
DECODER_INIT = "decoder_init"
DECODER_STEP = "decoder_step"
GRAPHS = (ENCODER, DECODER_INIT, DECODER_STEP)

# Opset 17 brought LayerNormalization; 18 is the newest every runtime we target reads
# (onnxruntime 1.20+, TensorRT 10).
DEFAULT_OPSET = 18
MIN_OPSET = 17

# Dynamic axis names, as they appear in the graphs' shapes.
BATCH = "batch"
PROMPT = "prompt"
PAST = "past"

INPUT_FEATURES = "input_features"
ENCODER_STATES = "encoder_hidden_states"
INPUT_IDS = "input_ids"
LOGITS = "logits"


def graph_file(graph: str) -> str:
    return f"{graph}.onnx"


def data_file(graph: str) -> str:
    """The external-data file of a graph whose weights do not fit in one protobuf (2 GB)."""
    return f"{graph}.onnx_data"


def kv_names(prefix: str, layers: int) -> list[str]:
    """`prefix_key.0, prefix_value.0, prefix_key.1, ...`: one key and one value per decoder layer."""
    return [f"{prefix}_{kind}.{layer}" for layer in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def graph_io(graph: str, decoder_layers: int) -> GraphIO:
    """Input and output names of `graph`, in graph order."""
    present = kv_names("present", decoder_layers)
    cross = kv_names("cross", decoder_layers)
    if graph == ENCODER:
        return GraphIO((INPUT_FEATURES,), (ENCODER_STATES,))
    if graph == DECODER_INIT:
        return GraphIO((INPUT_IDS, ENCODER_STATES), (LOGITS, *present, *cross))
    if graph == DECODER_STEP:
        return GraphIO((INPUT_IDS, *kv_names("past", decoder_layers), *cross), (LOGITS, *present))
    raise ValueError(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
