"""transformers checkpoint -> the directory OpenVINO GenAI's `WhisperPipeline` loads, for the
`openvino-genai` bench peer.

This is the peer's own input format, not a dwkit backend, so it lives with the bench (beside
the peers that read it) rather than among dwconvert's formats. The bench converts it once in a
worker and caches it like its other conversions (`dwkit.conversion_cache`, keyed on this
module's code).

The layout is the one optimum-intel's `optimum-cli export openvino` writes and WhisperPipeline
reads: `openvino_encoder_model.xml` (input_features -> last_hidden_state),
`openvino_decoder_model.xml` (one *stateful* decoder: input_ids, encoder_hidden_states,
cache_position, beam_idx -> logits, with the self-attention cache and the cross-attention
keys/values held as OpenVINO variables), `openvino_tokenizer.xml` / `openvino_detokenizer.xml`
(`openvino_tokenizers.convert_tokenizer`) and the checkpoint's config files. optimum-intel
itself is not used: 2.2.0 requires optimum~=2.3 (dwkit has 2.1, pinned by optimum-onnx 0.1)
and torchvision, and its resolver pulls a CUDA torch 2.14 over the CPU 2.13 build. The
graphs are made here with `openvino.convert_model` on small torch wrappers, and the decoder is
made stateful with OpenVINO's own `apply_make_stateful_transformation` plus the two graph
edits GenAI's loader expects (a `beam_idx` Gather on each cache input; cross keys/values
computed once per window into variables), which no public OpenVINO API offers as one call.

Precisions: fp32 (weights as trained) and int8 (optimum-intel's `--weight-format int8`:
NNCF `compress_weights` INT8_ASYM, per output channel, on every MatMul and embedding weight
of encoder and decoder; activations stay float, computed at the CPU plugin's inference
precision).

Memory: the torch checkpoint is loaded once in fp32; each graph is converted (`convert_model`
shares the torch weights rather than copying them), compressed and saved, then dropped before
the next. Measured peak RSS of the whole int8 export on the shared 2-core EPYC: tiny.en 1.0 GB
(20.7 s), base 1.25 GB (36.5 s; 277 MB of fp32 weights): ~0.75 GB of libraries plus
1.2-1.7x the fp32 weights, so 4-6 GB expected for distil-large-v3.5 (756M parameters, 3.0 GB
of fp32 weights; the onnx export peaks at ~5 GB). Not measured at full size here: the shared
machine was running a full-size benchmark.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

FORMAT = "openvino-genai"  # the (format, precision) key of the bench's conversions
JOB_KIND = "openvino_genai_export"  # the worker job that writes it
PRECISIONS = ("fp32", "int8")
ENCODER_FILE = "openvino_encoder_model.xml"
DECODER_FILE = "openvino_decoder_model.xml"
TOKENIZER_FILE = "openvino_tokenizer.xml"
DETOKENIZER_FILE = "openvino_detokenizer.xml"
CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")
INT8_WEIGHTS = (
    "int8 weights: NNCF compress_weights INT8_ASYM (per output channel) on every MatMul and "
    "embedding weight of encoder and decoder (optimum-intel's --weight-format int8); activations float"
)
EXAMPLE_PAST = 3  # example cache length for tracing (not 0 or 1, so no axis is specialised)


def export(source: Path, out_dir: Path, precision: str) -> dict[str, Any]:
    """Write the WhisperPipeline directory of checkpoint `source` into `out_dir` (atomically);
    what it cost, as the worker's conversion jobs report it."""
    from dwkit.bench.measure import dir_size_mb, peak_rss_mb
    from dwkit.converters.base import atomic_output_dir, copy_if_present, library_versions, require_checkpoint
    from dwkit.converters.hf_files import TOKENIZER_FILES
    from dwkit.errors import ConversionError
    from dwkit.manifest import write_manifest
    from dwkit.model_info import ModelInfo

    if precision not in PRECISIONS:
        raise ConversionError(
            f"{FORMAT}: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    source = Path(source)
    require_checkpoint(source)
    info = ModelInfo.from_hf_dir(source)
    started = time.perf_counter()
    # Tracing warns about every shape read as a Python value; the decoder module below builds
    # what must stay dynamic from tensors, and the tests run the graphs at other lengths.
    with warnings.catch_warnings(), atomic_output_dir(out_dir, overwrite=True) as tmp:
        warnings.simplefilter("ignore")
        model = _load(source)
        _save(_encoder(model), tmp / ENCODER_FILE, precision)
        _save(_decoder(model), tmp / DECODER_FILE, precision)
        del model
        _tokenizers(source, tmp)
        copy_if_present(source, tmp, CONFIG_FILES + TOKENIZER_FILES)
        write_manifest(
            tmp,
            {
                "format": FORMAT,
                "precision": precision,
                "source": {"path": str(source)},
                "tool": "dwkit.bench.openvino_genai (for openvino_genai.WhisperPipeline)",
                "library_versions": library_versions(
                    "openvino", "openvino-tokenizers", "nncf", "torch", "transformers"
                ),
                "model_info": info.to_dict(),
                "weights": INT8_WEIGHTS if precision == "int8" else "fp32 weights as trained",
            },
        )
    return {
        "out_dir": str(out_dir),
        "seconds": round(time.perf_counter() - started, 1),
        "size_mb": dir_size_mb(out_dir),
        "peak_rss_mb": peak_rss_mb(),
        "validated": False,
    }


def _load(source: Path) -> Any:
    """The checkpoint in fp32 with transformers' SDPA attention (it converts to OpenVINO's own
    ScaledDotProductAttention op, as optimum-intel's exports do)."""
    import torch
    from transformers import WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from dwkit.runtimes.hf import quiet_loading

    hf_logging.set_verbosity_error()
    with quiet_loading():
        model = WhisperForConditionalGeneration.from_pretrained(
            source, dtype=torch.float32, attn_implementation="sdpa"
        )
    return model.eval()


def _save(model: Any, path: Path, precision: str) -> None:
    import openvino as ov

    if precision == "int8":
        from dwkit.converters.openvino import compress_weights

        model = compress_weights(model)
    ov.save_model(model, str(path), compress_to_fp16=False)


def _name(ports: Any, names: list[str]) -> None:
    for port, name in zip(ports, names, strict=True):
        port.get_tensor().set_names({name})


# -- encoder ------------------------------------------------------------------------------------


def _encoder(model: Any) -> Any:
    import openvino as ov
    import torch

    from dwkit.constants import N_FRAMES

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.model.encoder

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_features=input_features).last_hidden_state

    example = torch.zeros(1, model.config.num_mel_bins, N_FRAMES)
    with torch.no_grad():
        converted = ov.convert_model(Encoder(), example_input={"input_features": example})
    _name(converted.outputs, ["last_hidden_state"])
    return converted


# -- decoder ------------------------------------------------------------------------------------


def _cache_names(layers: int) -> tuple[list[str], list[str]]:
    kinds = [(layer, kind) for layer in range(layers) for kind in ("key", "value")]
    return (
        [f"past_key_values.{layer}.decoder.{kind}" for layer, kind in kinds],
        [f"present.{layer}.decoder.{kind}" for layer, kind in kinds],
    )


def _decoder(model: Any) -> Any:
    """The decoder for any step (prompt or one token) traced once, then made stateful."""
    import openvino as ov
    import torch

    config = model.config
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads
    past = [torch.zeros(1, heads, EXAMPLE_PAST, head_dim) for _ in range(2 * layers)]
    example = (
        torch.full((1, 2), config.decoder_start_token_id, dtype=torch.long),
        torch.zeros(1, config.max_source_positions, config.d_model),
        torch.arange(EXAMPLE_PAST, EXAMPLE_PAST + 2),
        *past,
    )
    with torch.no_grad():
        converted = ov.convert_model(_decoder_module(model), example_input=example)
    past_names, present_names = _cache_names(layers)
    _name(converted.inputs, ["input_ids", "encoder_hidden_states", "cache_position", *past_names])
    _name(converted.outputs, ["logits", *present_names])
    _make_stateful(converted, past_names, present_names)
    _cache_cross_attention(converted)
    return converted


def _decoder_module(model: Any) -> Any:
    """(input_ids, encoder_hidden_states, cache_position, *self-attention cache) -> (logits,
    *new cache), cross keys/values computed from encoder_hidden_states.

    Two things keep the traced graph valid for every prompt and cache length: the caches are
    filled with 4-D tensors (transformers starts an empty cache as a 1-D `tensor([])`, whose
    concatenation OpenVINO rejects), and the causal mask is built here from `cache_position`
    as tensors (transformers' own mask code reads lengths as Python ints, which tracing
    freezes at the example's sizes).
    """
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

    def filled(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
        cache = DynamicCache()
        for keys, values in pairs:
            layer = DynamicLayer()
            layer.lazy_initialization(keys)
            layer.keys, layer.values = keys, values
            cache.layers.append(layer)
        return cache

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = model.model.decoder
            self.proj_out = model.proj_out
            self.layers = model.config.decoder_layers

        def forward(
            self,
            input_ids: torch.Tensor,
            encoder_hidden_states: torch.Tensor,
            cache_position: torch.Tensor,
            *past: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            empty = past[0][:, :, :0]  # [batch, heads, 0, head_dim]: cross K/V not computed yet
            cache = EncoderDecoderCache(
                filled([(past[2 * i], past[2 * i + 1]) for i in range(self.layers)]),
                filled([(empty, empty)] * self.layers),
            )
            past_positions = torch.ones_like(past[0][0, 0, :, 0], dtype=torch.long).cumsum(0) - 1
            key_positions = torch.cat([past_positions, cache_position])
            visible = key_positions[None, :] <= cache_position[:, None]
            dtype = encoder_hidden_states.dtype
            mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=encoder_hidden_states,
                attention_mask=mask[None, None],
                past_key_values=cache,
                cache_position=cache_position,
                use_cache=True,
            )
            logits = self.proj_out(out.last_hidden_state)
            kv = [t for layer in cache.self_attention_cache.layers for t in (layer.keys, layer.values)]
            return (logits, *kv)

    return Decoder().eval()


def _make_stateful(model: Any, past_names: list[str], present_names: list[str]) -> None:
    """The self-attention cache becomes variables: each past input is reordered by a new
    `beam_idx` input (GenAI's beam search), then paired with its present output, and starts
    each window empty ([batch, heads, 0, head_dim], batch from input_ids)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    batch = model.input("input_ids").get_partial_shape()[0]
    beam_idx = ops.parameter(ov.PartialShape([batch]), ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    model.add_parameters([beam_idx])
    for name in past_names:
        port = model.input(name)
        consumers = port.get_target_inputs()
        reordered = ops.gather(port, beam_idx, ops.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(reordered.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, dict(zip(past_names, present_names, strict=True)))
    rows = ops.gather(ops.shape_of(model.input("input_ids"), "i64"), ops.constant([0]), ops.constant(0))
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        fixed = [
            ops.constant(np.array([d.get_min_length()], np.int64)) for d in op.get_output_partial_shape(0)
        ]
        shape = ops.concat([rows, *fixed[1:]], 0)
        op.set_arguments([ops.broadcast(ops.constant(0.0, ov.Type.f32), shape)])
    model.validate_nodes_and_infer_types()


def _cache_cross_attention(model: Any) -> None:
    """Each cross-attention key/value projection (the nodes computed from encoder_hidden_states
    alone) is stored in a variable: computed on a window's first decoder call, read after."""
    from openvino import opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    states = model.input("encoder_hidden_states").get_node()
    sources = {
        *model.get_parameters(),
        *(op for op in model.get_ops() if op.get_type_name() in ("ReadValue", "ShapeOf")),
    }
    others = _dependents(model, sources - {states})
    from_states = _dependents(model, {states}) - others
    edges = [
        node
        for node in from_states
        if any(
            target.get_node() in others for output in node.outputs() for target in output.get_target_inputs()
        )
    ]
    for node in edges:
        for output in node.outputs():
            info = VariableInfo()
            info.data_shape = output.get_partial_shape()
            info.data_type = output.get_element_type()
            info.variable_id = f"cross.{node.get_friendly_name()}.{output.get_index()}"
            variable = Variable(info)
            consumers = output.get_target_inputs()
            stored = ops.read_value(output, variable)
            for consumer in consumers:
                consumer.replace_source_output(stored.output(0))
            model.add_sinks([ops.assign(stored, variable)])
            model.add_variables([variable])
    model.validate_nodes_and_infer_types()


def _dependents(model: Any, sources: set[Any]) -> set[Any]:
    """Every node that reads, directly or not, one of `sources` (which are included)."""
    found = set(sources)
    for node in model.get_ordered_ops():
        if any(value.get_node() in found for value in node.input_values()):
            found.add(node)
    return found


# -- tokenizer --------------------------------------------------------------------------------


def _tokenizers(source: Path, out: Path) -> None:
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(source), with_detokenizer=True)
    ov.save_model(tokenizer, str(out / TOKENIZER_FILE))
    ov.save_model(detokenizer, str(out / DETOKENIZER_FILE))
