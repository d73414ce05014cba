"""Decoding over dwkit's three graphs (encoder, decoder_init, decoder_step), for any runtime.

The onnx and trt backends differ only in where tensors live and how a graph is called
(onnxruntime OrtValues through IO bindings; torch CUDA buffers through TensorRT engines).
That difference is a `GraphRunner`, a small tensor adapter; everything else, the cache
handling, prompt de-duplication and beam reordering, is `GraphStepBackend`, written once:

- decoder_init runs once per distinct (audio row, prompt): beams start as copies of one row,
  so their caches are gathered from the one run instead of computed again;
- each decoder_step takes the past [batch, heads, past, head_dim] and returns the present
  [.., past + 1, ..], which becomes the next past; tokens after a prefix go one at a time;
- a beam reorder gathers the self-attention cache rows, and the cross-attention keys/values
  only when a row moves to another audio (beams of one audio share them).
Only token ids go in and logits come out through the host; cache tensors stay where the
runner keeps them. Word timestamps (`cross_attentions`) run the optional alignment graph
(`onnx_graphs.DECODER_ALIGN`) on one row; the decoding graphs never see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dwkit.errors import ModelError
from dwkit.model_info import ModelInfo
from dwkit.onnx_graphs import DECODER_INIT, DECODER_STEP, ENCODER, GRAPHS
from dwkit.runtimes.base import EncoderOutput, StepBackend, check_part


def converted_graphs(model_dir: Path, fmt: str, requested: str | None) -> tuple[dict[str, Any], str]:
    """(manifest, precision) of a `fmt` directory that runs only at the precision it was
    converted to; a clear error for another directory or another requested precision."""
    from dwkit.errors import ConfigError, ModelError
    from dwkit.manifest import read_manifest

    manifest = read_manifest(model_dir)
    if not manifest or manifest.get("format") != fmt:
        raise ModelError(f"{model_dir}: not an {fmt} model directory (convert it with dwconvert --to {fmt})")
    precision = str(manifest.get("precision", "fp32"))
    if requested not in (None, precision):
        raise ConfigError(
            f"{model_dir} holds {precision} graphs; {fmt} runs a directory at the precision it was "
            f"converted to (convert again with --precision {requested} for that)"
        )
    return manifest, precision


def graph_file_problems(model_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Graph files missing, or of another size than the manifest recorded (`dwkit info`). A
    graph's recorded bytes cover its side file too: onnx's external data, OpenVINO's weights."""
    problems = []
    for graph in manifest.get("graphs") or []:
        names = [graph.get("file", ""), *(graph[k] for k in ("external_data", "weights") if graph.get(k))]
        files = [model_dir / name for name in names]
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            problems.append(f"{', '.join(missing)}: missing (an incomplete copy or conversion?)")
            continue
        size = sum(path.stat().st_size for path in files)
        if graph.get("bytes") is not None and size != graph["bytes"]:
            side = " with its weights" if len(files) > 1 else ""
            problems.append(
                f"{graph['file']}: {size} bytes{side}, but the manifest recorded {graph['bytes']} "
                "(truncated or replaced)"
            )
    return problems


def part_graphs(part: str | None) -> tuple[str, ...]:
    """The graphs a backend loads: a pair's encoder side needs only the encoder, its decoder
    side only the two decoder graphs (at full size the int8 encoder alone is ~0.6-1.3 GB)."""
    check_part(part)
    return {None: GRAPHS, "encoder": (ENCODER,), "decoder": (DECODER_INIT, DECODER_STEP)}[part]


def encoder_left_out(backend: str) -> ModelError:
    return ModelError(
        f"{backend}: loaded as an encoder/decoder pair's decoder side, without its encoder graph; "
        "load it without RuntimeConfig.part to encode"
    )


class GraphRunner(Protocol):
    """What a runtime provides: its tensors' batch size and row gather, and the two decoder
    graphs. Tensors are the runtime's own (OrtValue, torch tensor); logits come back on the host."""

    def batch_size(self, value: Any) -> int: ...

    def gather(self, values: list[Any], index: np.ndarray) -> list[Any]:
        """Rows `index` (batch axis 0) of each tensor, on its own device."""
        ...

    def decoder_init(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, list[Any], list[Any]]:
        """(logits [batch, prompt, vocab], self K/V, cross K/V) for prompts on encoder states."""
        ...

    def step_context(self, cross_kv: list[Any]) -> Any:
        """What decoder_step keeps between calls for these cross K/V (e.g. an IO binding)."""
        ...

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[Any], context: Any
    ) -> tuple[np.ndarray, list[Any]]:
        """(logits [batch, 1, vocab], the new self K/V) after one token per row."""
        ...

    def decoder_align(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, np.ndarray]:
        """(logits [batch, tokens, vocab], cross-attention weights [batch, layers, heads,
        tokens, frames]) on the host; a ModelError naming the fix when the model has no
        alignment graph."""
        ...


@dataclass
class GraphCache:
    """Decoder state of one batch: before the prompt pass only the encoder rows are known."""

    encoder_states: Any  # the runner's tensor [encoder batch, frames, d_model]; None once cached
    rows: np.ndarray  # encoder row of each cache row
    self_kv: list[Any] | None = None  # kv_names order
    cross_kv: list[Any] | None = None
    context: Any = None  # GraphRunner.step_context of cross_kv


def check_heads(info: ModelInfo, heads: list[tuple[int, int]]) -> None:
    """Refuse (decoder layer, head) pairs the model does not have, before a runtime indexes them."""
    layers, per_layer = info.decoder_layers, info.decoder_heads
    bad = [(layer, head) for layer, head in heads if not (0 <= layer < layers and 0 <= head < per_layer)]
    if bad:
        raise ModelError(
            f"alignment heads {bad} are outside this model's {layers} decoder layers x {per_layer} heads"
        )


class GraphStepBackend(StepBackend):
    """`StepBackend` over the three graphs; subclasses set `runner` and implement `encode`."""

    runner: GraphRunner

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        return EncoderOutput(data=self.runner.gather([enc.data], np.asarray(rows))[0], batch_size=len(rows))

    def start(self, enc: EncoderOutput, batch_index: np.ndarray) -> GraphCache:
        return GraphCache(encoder_states=enc.data, rows=np.asarray(batch_index, dtype=np.int64))

    def step(self, tokens: np.ndarray, cache: GraphCache) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if cache.self_kv is None:
            return self._prompt(tokens, cache)
        if tokens.shape[1] == 1:
            return self._next(tokens, cache)
        # The step graph takes one token; more after a prefix are fed one at a time.
        return np.concatenate(
            [self._next(tokens[:, i : i + 1], cache) for i in range(tokens.shape[1])], axis=1
        )

    def _prompt(self, tokens: np.ndarray, cache: GraphCache) -> np.ndarray:
        """decoder_init on each distinct (audio row, prompt) once."""
        keyed = np.concatenate([cache.rows[:, None], tokens], axis=1)
        _, first, inverse = np.unique(keyed, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        distinct = len(first) < len(tokens)
        run_rows = cache.rows[first] if distinct else cache.rows
        run_tokens = tokens[first] if distinct else tokens
        states = cache.encoder_states
        if not np.array_equal(run_rows, np.arange(self.runner.batch_size(states))):
            states = self.runner.gather([states], run_rows)[0]
        logits, self_kv, cross_kv = self.runner.decoder_init(np.ascontiguousarray(run_tokens), states)
        if distinct:
            self_kv = self.runner.gather(self_kv, inverse)
            cross_kv = self.runner.gather(cross_kv, inverse)
            logits = logits[inverse]
        cache.self_kv, cache.cross_kv = list(self_kv), list(cross_kv)
        cache.encoder_states = None  # the cross keys/values replace it
        cache.context = self.runner.step_context(cache.cross_kv)
        return logits

    def _next(self, tokens: np.ndarray, cache: GraphCache) -> np.ndarray:
        """decoder_step: past -> present, which becomes the next past."""
        assert cache.self_kv is not None
        logits, cache.self_kv = self.runner.decoder_step(
            np.ascontiguousarray(tokens), cache.self_kv, cache.context
        )
        return logits

    def cross_attentions(
        self, enc: EncoderOutput, row: int, tokens: list[int], heads: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        check_heads(self.info, heads)
        states = self.runner.gather([enc.data], np.array([row], dtype=np.int64))[0]
        logits, weights = self.runner.decoder_align(np.array([tokens], dtype=np.int64), states)
        pick = np.array(heads, dtype=np.int64).reshape(-1, 2)
        return (
            np.ascontiguousarray(weights[0, pick[:, 0], pick[:, 1]], dtype=np.float32),
            np.ascontiguousarray(logits[0], dtype=np.float32),
        )

    def reorder(self, cache: GraphCache, index: np.ndarray) -> GraphCache:
        index = np.asarray(index, dtype=np.int64)
        rows = cache.rows[index]
        if cache.self_kv is not None and cache.cross_kv is not None:
            cache.self_kv = self.runner.gather(cache.self_kv, index)
            if not np.array_equal(rows, cache.rows):  # a row moved to another audio
                cache.cross_kv = self.runner.gather(cache.cross_kv, index)
                cache.context = self.runner.step_context(cache.cross_kv)
        cache.rows = rows
        return cache
