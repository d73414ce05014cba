"""The three ONNX graphs of a Whisper export, described as data.

The exporter (`converters/onnx_export`), the onnx and trt runtimes and the TensorRT builder
all read the graph names, file names, input/output names and the optimisation profiles from
here, so they cannot drift apart (this module sits beside both layers: runtimes never import
converters):

- encoder:      input_features [batch, n_mels, 3000] -> encoder_hidden_states [batch, 1500, d_model]
- decoder_init: input_ids [batch, prompt], encoder_hidden_states
                -> logits [batch, prompt, vocab], present_{key,value}.N [batch, heads, prompt, head_dim],
                   cross_{key,value}.N [batch, heads, 1500, head_dim]
- decoder_step: input_ids [batch, 1], past_{key,value}.N [batch, heads, past, head_dim], cross_{key,value}.N
                -> logits [batch, 1, vocab], present_{key,value}.N [batch, heads, past + 1, head_dim]
- decoder_align (only in exports made for word timestamps): input_ids [batch, prompt], encoder_hidden_states
                -> logits [batch, prompt, vocab],
                   cross_attentions [batch, decoder layers, heads, prompt, 1500] (softmax weights)

The alignment graph is a fourth, cache-less graph rather than extra outputs of decoder_init:
the graphs decoding runs stay byte for byte what they were, so they run exactly as fast, and
the weights (tokens x 1500 per head and layer) are computed only when words are aligned.

Separate graphs (no `If` node choosing between a first and a later step) keep each one a
plain feed-forward network, which TensorRT builds with one optimisation profile each.
Importing this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dwkit.constants import N_FRAMES

if TYPE_CHECKING:
    from dwkit.model_info import ModelInfo

ENCODER = "encoder"
DECODER_INIT = "decoder_init"
DECODER_STEP = "decoder_step"
GRAPHS = (ENCODER, DECODER_INIT, DECODER_STEP)  # what every export holds: decoding needs all three
DECODER_ALIGN = "decoder_align"  # optional: word timestamps (dwconvert --to onnx --word-timestamps)
ALIGN_MAX_BATCH = 1  # the alignment graph teacher-forces one row at a time (StepBackend.cross_attentions)

# Opset 17 brought LayerNormalization; 18 is the newest every runtime we target reads
# (onnxruntime 1.20+, TensorRT 10).
DEFAULT_OPSET = 18
MIN_OPSET = 17

# Dynamic axis names, as they appear in the graphs' shapes.
BATCH = "batch"
PROMPT = "prompt"
PAST = "past"
DYNAMIC_DIMS = (BATCH, PROMPT, PAST)
MAX_BATCH = 1024  # the exported graphs' bound on the batch axis (and so on TensorRT profiles)
PROMPT_OPT = 4  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>

INPUT_FEATURES = "input_features"
ENCODER_STATES = "encoder_hidden_states"
INPUT_IDS = "input_ids"
LOGITS = "logits"
CROSS_ATTENTIONS = "cross_attentions"


def export_graphs(word_timestamps: bool) -> tuple[str, ...]:
    """The graphs an export holds: the three decoding needs, plus the alignment graph when asked."""
    return (*GRAPHS, DECODER_ALIGN) if word_timestamps else GRAPHS


def graph_file(graph: str) -> str:
    return f"{graph}.onnx"


def data_file(graph: str) -> str:
    """The external-data file of a graph whose weights do not fit in one protobuf (2 GB)."""
    return f"{graph}.onnx_data"


def kv_names(prefix: str, layers: int) -> list[str]:
    """`prefix_key.0, prefix_value.0, prefix_key.1, ...`: one key and one value per decoder layer."""
    return [f"{prefix}_{kind}.{layer}" for layer in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class CacheNames:
    """The key/value tensor names the decoder graphs exchange, in graph order."""

    past: tuple[str, ...]  # decoder_step inputs: the self-attention cache so far
    present: tuple[str, ...]  # decoder outputs: the self-attention cache after this call
    cross: tuple[str, ...]  # decoder_init outputs, decoder_step inputs: cross-attention K/V


def cache_names(decoder_layers: int) -> CacheNames:
    return CacheNames(*(tuple(kv_names(prefix, decoder_layers)) for prefix in ("past", "present", "cross")))


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
    if graph == DECODER_ALIGN:
        return GraphIO((INPUT_IDS, ENCODER_STATES), (LOGITS, CROSS_ATTENTIONS))
    raise ValueError(f"unknown graph {graph!r}; the graphs are {', '.join(export_graphs(True))}")


# -- optimisation profiles ------------------------------------------------------------------------
# TensorRT (its builder, and onnxruntime's TensorRT provider) compiles for one range of input
# shapes; these describe that range once for both routes. The past length starts at 1, not 0:
# the step graph only runs after decoder_init has cached at least one token (and torch.export
# marks the axis as at least 1).

Profile = dict[str, dict[str, list[int]]]  # input -> {"min", "opt", "max"} shapes


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
            return (BATCH, 1 if graph == DECODER_STEP else PROMPT)
        if name.startswith("past_"):
            return (BATCH, heads, PAST, head_dim)
        if name.startswith("cross_"):
            return (BATCH, heads, info.n_audio_ctx, head_dim)
        raise ValueError(f"no shape for input {name!r}")

    return {name: shape(name) for name in graph_io(graph, info.decoder_layers).inputs}


def dimension_ranges(
    info: ModelInfo, max_batch: int, opt_batch: int | None = None
) -> dict[str, dict[str, int]]:
    """min/opt/max of each dynamic dimension: what the shared decoders can ask for."""
    ctx = info.n_text_ctx
    return {
        BATCH: {"min": 1, "opt": min(opt_batch or max_batch, max_batch), "max": max_batch},
        PROMPT: {"min": 1, "opt": min(PROMPT_OPT, ctx), "max": ctx},
        PAST: {"min": 1, "opt": max(1, ctx // 2), "max": ctx - 1},
    }


def profiles(
    info: ModelInfo, max_batch: int, *, opt_batch: int | None = None, encoder_max_batch: int | None = None
) -> dict[str, Profile]:
    """graph -> input -> {"min", "opt", "max"} shapes: one optimisation profile per graph.

    `max_batch` bounds the decoder graphs (beams multiply the audio batch); the encoder only
    ever sees audio rows, so `encoder_max_batch` may bound it lower, and the alignment graph
    one row (ALIGN_MAX_BATCH). `opt_batch` is the batch TensorRT tunes its kernels for
    (default: the largest).
    """
    found: dict[str, Profile] = {}
    for graph in export_graphs(True):
        limit = encoder_max_batch if graph == ENCODER and encoder_max_batch else max_batch
        limit = min(limit, ALIGN_MAX_BATCH) if graph == DECODER_ALIGN else limit
        ranges = dimension_ranges(info, limit, opt_batch)
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
            problems += _axis_problems(name, axis, dim, (low[axis], opt[axis], high[axis]))
    for name in sorted(set(profile) - declared):
        problems.append(f"the profile names input {name}, which the graph does not have")
    return problems


def _axis_problems(name: str, axis: int, dim: int | str, bounds: tuple[int, int, int]) -> list[str]:
    lo, op, hi = bounds
    if isinstance(dim, int) and dim > 0:
        if not lo == op == hi == dim:
            return [f"input {name} axis {axis} is fixed at {dim} but the profile gives {lo}..{hi}"]
    elif dim not in DYNAMIC_DIMS:
        return [
            f"input {name} axis {axis} is dynamic ({dim or 'unnamed'!r}) and no profile dimension "
            f"covers it (the profiles cover {', '.join(DYNAMIC_DIMS)})"
        ]
    elif not 1 <= lo <= op <= hi:
        return [f"input {name} axis {axis} ({dim}): profile min/opt/max {lo}/{op}/{hi} out of order"]
    return []


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
