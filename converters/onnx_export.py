"""torch -> ONNX: the three Whisper graphs of `onnx_graphs`, exported with torch.onnx (dynamo).

Why this shape (all measured with torch 2.13, transformers 4.57, onnxruntime 1.32):
- The dynamo exporter keeps batch and prompt/past lengths symbolic, writes no `If` node and
  keeps the tied embedding / output projection as one tensor; the legacy exporter bakes the
  mask and prompt lengths into the graph and duplicates the tied weights.
- The model is exported with transformers' *eager* attention. Its `q @ k.transpose(-1, -2)`
  reaches onnxruntime as a Transpose feeding a MatMul, which onnxruntime fuses into one
  transposed MatMul; the SDPA decomposition wraps the transpose in reshapes, onnxruntime
  cannot fuse it, and every decoder step then copied each layer's cross-attention keys
  (tiny.en: ~16 ms per step instead of ~6 ms on one core). Both match transformers' SDPA
  model to ~3e-5 on the logits.
- transformers' decoder skips cross-attention when `encoder_hidden_states` is None, so a step
  graph traced that way silently loses it. The step wrapper passes a placeholder and marks
  the cross-attention cache as already computed: each layer then reads its cross keys and
  values from the graph inputs.
- The alignment graph (word timestamps, only when asked) is the decoder without a cache,
  called with `output_attentions=True`: eager attention hands back each layer's softmax
  cross-attention weights, the very tensors transformers' own word timestamps read.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dwkit.constants import N_FRAMES
from dwkit.errors import ConversionError
from dwkit.onnx_graphs import (
    BATCH,
    DECODER_ALIGN,
    DECODER_INIT,
    DECODER_STEP,
    ENCODER,
    MAX_BATCH,
    PAST,
    PROMPT,
    data_file,
    graph_io,
)

# Example sizes for tracing: above 1 so that torch.export does not specialise an axis to 0/1.
EXAMPLE_BATCH = 2
EXAMPLE_LENGTH = 3
# Above this much weight data a graph's tensors go to a separate file (protobuf's limit is 2 GB).
EXTERNAL_DATA_BYTES = 1 << 30


def load_model(source: Path) -> Any:
    """The source checkpoint in float32 with eager attention (see the module docstring)."""
    from transformers import WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from dwkit.runtimes.hf import quiet_loading

    hf_logging.set_verbosity_error()
    try:
        with quiet_loading():
            model = WhisperForConditionalGeneration.from_pretrained(
                source, dtype="float32", attn_implementation="eager"
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"{source}: transformers could not load it ({exc})") from exc
    return model.eval()


def _wrappers() -> dict[str, type]:
    """The graph modules, built lazily so that importing this module does not import torch."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class EncoderGraph(torch.nn.Module):
        def __init__(self, model: Any):
            super().__init__()
            self.encoder = model.model.encoder

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_features=input_features).last_hidden_state

    class DecoderInitGraph(torch.nn.Module):
        """Prompt pass: logits, the self-attention cache and every layer's cross keys/values."""

        def __init__(self, model: Any):
            super().__init__()
            self.decoder = model.model.decoder
            self.proj_out = model.proj_out

        def forward(
            self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=encoder_hidden_states,
                past_key_values=cache,
                use_cache=True,
            )
            logits = self.proj_out(out.last_hidden_state)
            return (logits, *_flatten(cache.self_attention_cache), *_flatten(cache.cross_attention_cache))

    class DecoderStepGraph(torch.nn.Module):
        """One new token after a cached prefix; cross keys/values come in, never recomputed."""

        def __init__(self, model: Any):
            super().__init__()
            self.decoder = model.model.decoder
            self.proj_out = model.proj_out
            self.layers = model.config.decoder_layers

        def forward(self, input_ids: torch.Tensor, *cache_tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            past, cross = cache_tensors[: 2 * self.layers], cache_tensors[2 * self.layers :]
            self_cache, cross_cache = DynamicCache(), DynamicCache()
            for layer in range(self.layers):
                self_cache.update(past[2 * layer], past[2 * layer + 1], layer)
                cross_cache.update(cross[2 * layer], cross[2 * layer + 1], layer)
            cache = EncoderDecoderCache(self_cache, cross_cache)
            for layer in range(self.layers):
                cache.is_updated[layer] = True  # the trap: read cross K/V from the cache
            placeholder = cross[0][:, 0, :1, :1]  # any non-None tensor; never read
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=placeholder,
                past_key_values=cache,
                use_cache=True,
            )
            logits = self.proj_out(out.last_hidden_state)
            return (logits, *_flatten(cache.self_attention_cache))

    class DecoderAlignGraph(DecoderInitGraph):
        """Teacher-forced tokens in one pass: logits and every layer's cross-attention weights
        [batch, layers, heads, tokens, frames] (no cache: nothing follows this pass)."""

        def forward(  # type: ignore[override]
            self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=encoder_hidden_states,
                use_cache=False,
                output_attentions=True,
            )
            return self.proj_out(out.last_hidden_state), torch.stack(out.cross_attentions, dim=1)

    def _flatten(cache: Any) -> list[torch.Tensor]:
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]

    return {
        ENCODER: EncoderGraph,
        DECODER_INIT: DecoderInitGraph,
        DECODER_STEP: DecoderStepGraph,
        DECODER_ALIGN: DecoderAlignGraph,
    }


def _example(model: Any, graph: str) -> tuple[tuple[Any, ...], Any]:
    """Example inputs and torch.export dynamic shapes for `graph`."""
    import torch

    config = model.config
    batch = torch.export.Dim(BATCH, min=1, max=MAX_BATCH)
    heads, d_model = config.decoder_attention_heads, config.d_model
    frames = config.max_source_positions
    gen = torch.Generator().manual_seed(0)
    if graph == ENCODER:
        features = torch.randn(EXAMPLE_BATCH, config.num_mel_bins, N_FRAMES, generator=gen)
        return (features,), {"input_features": {0: batch}}
    ids = torch.full((EXAMPLE_BATCH, EXAMPLE_LENGTH), config.decoder_start_token_id, dtype=torch.long)
    if graph in (DECODER_INIT, DECODER_ALIGN):
        prompt = torch.export.Dim(PROMPT, min=1, max=config.max_target_positions)
        states = torch.randn(EXAMPLE_BATCH, frames, d_model, generator=gen)
        return (ids, states), {"input_ids": {0: batch, 1: prompt}, "encoder_hidden_states": {0: batch}}
    past = torch.export.Dim(PAST, min=1, max=config.max_target_positions - 1)
    head_dim = d_model // heads
    layers = config.decoder_layers
    self_kv = [
        torch.randn(EXAMPLE_BATCH, heads, EXAMPLE_LENGTH, head_dim, generator=gen) for _ in range(2 * layers)
    ]
    cross_kv = [torch.randn(EXAMPLE_BATCH, heads, frames, head_dim, generator=gen) for _ in range(2 * layers)]
    cache_shapes = ({0: batch, 2: past},) * (2 * layers) + ({0: batch},) * (2 * layers)
    shapes = {"input_ids": {0: batch}, "cache_tensors": cache_shapes}
    return (ids[:, :1], *self_kv, *cross_kv), shapes


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """The exporter's notices (missing torchvision, deprecations) are not the user's problem."""
    captured = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore")
            yield captured
    finally:
        logger.setLevel(level)


def _summary(message: str) -> str:
    """torch.export's errors open with generic advice; the cause follows "Exception summary"."""
    _, _, tail = message.partition("## Exception summary")
    return " ".join((tail or message).split("For more information")[0].split())[:800]


def initializer_bytes(program: Any) -> int:
    return sum(
        v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None
    )


def export_graph(model: Any, graph: str, path: Path, opset: int, external_data: bool | None) -> None:
    """Export `graph` of `model` to `path` (+ `data_file(graph)` beside it when external).

    `external_data` None: only when the weights exceed EXTERNAL_DATA_BYTES (protobuf caps a
    file at 2 GB; the distil-large-v3.5 encoder is ~2.5 GB in fp32).
    """
    import onnx_ir as ir
    import torch

    module = _wrappers()[graph](model).eval()
    args, dynamic_shapes = _example(model, graph)
    names = graph_io(graph, model.config.decoder_layers)
    with torch.no_grad(), _quiet() as captured:
        try:
            program = torch.onnx.export(
                module,
                args,
                input_names=list(names.inputs),
                output_names=list(names.outputs),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # torch.export / onnxscript raise many types
            detail = _summary(str(exc))
            raise ConversionError(
                f"torch.onnx.export failed on the {graph} graph: {detail}\n{captured.getvalue()[-2000:]}"
            ) from exc
        assert program is not None
        if external_data is None:
            external_data = initializer_bytes(program) > EXTERNAL_DATA_BYTES
        ir.save(program.model, path, external_data=data_file(graph) if external_data else None)
