"""TensorRT backend: the encoder / decoder-init / decoder-step engines of `dwkit.converters.trt`.

It implements `StepBackend`'s small methods and inherits generation (greedy, beam, the logit
rules) from the shared decoders. Engines are reached only through
`dwkit.runtimes.tensorrt_api.Engine`, whose buffers are torch CUDA tensors: encoder states,
the self-attention cache and the cross-attention keys/values stay on the GPU from the engine
that wrote them to the engine that reads them; only token ids go in and logits come out.

Cache management: decoder_init runs once per distinct (audio row, prompt) (beams start as
copies of one row), returning the prompt's self-attention keys/values and every layer's cross
keys/values. Each decoder_step takes the past [batch, heads, past, head_dim] and returns
present [.., past + 1, ..], which becomes the next past. A beam reorder gathers the
self-attention cache rows; the cross keys/values only when a row moves to another audio.
Batches larger than an engine's profile run in chunks of its max batch (batch-axis slices of
contiguous tensors are contiguous, so chunks need no copies in).

A model directory is either a trt directory (engines built by dwconvert --to trt) or an onnx
directory: then the engines are built on first use, from the same plan, into an engine cache
(`options["engine_cache"]`, default `$DWKIT_CACHE/trt` or `~/.cache/dwkit/trt`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters.onnx_graphs import (
    DECODER_INIT,
    DECODER_STEP,
    ENCODER,
    ENCODER_STATES,
    GRAPHS,
    INPUT_FEATURES,
    INPUT_IDS,
    LOGITS,
    graph_io,
    kv_names,
)
from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.manifest import read_manifest
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, StepBackend, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec

PRECISIONS = ("fp16", "bf16", "fp32")
DEFAULT_PRECISION = "fp16"
# RuntimeConfig.options this backend reads, all three only when it builds the engines of an onnx
# directory: where to cache them, the profiles' largest batch (default 8), TensorRT's workspace.
OPTIONS = ("engine_cache", "max_batch", "workspace_mib")
BUILD_FACTS = "trt_build.json"


@dataclass
class _Cache:
    """Decoder state of one batch; before the prompt pass only the encoder rows are known."""

    encoder_states: Any  # torch tensor [encoder batch, frames, d_model]
    rows: np.ndarray  # encoder row of each cache row
    self_kv: list[Any] | None = None  # torch tensors, kv_names order
    cross_kv: list[Any] | None = None


class TrtBackend(StepBackend):
    name = "trt"
    PRECISIONS = PRECISIONS

    def __init__(self, engines: Mapping[str, Any], info: ModelInfo, precision: str, device: Any):
        """`engines`: graph name -> an object with tensorrt_api.Engine's surface."""
        import torch

        self.engines = dict(engines)
        self.info = info
        self.precision = precision
        self.device = torch.device(device)
        layers = info.decoder_layers
        self._past_names = kv_names("past", layers)
        self._present_names = kv_names("present", layers)
        self._cross_names = kv_names("cross", layers)
        self._check_engines()
        self.max_batch = {g: e.profile[graph_io(g, layers).inputs[0]][2][0] for g, e in self.engines.items()}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from dwkit.runtimes import tensorrt_api

        reasons = tensorrt_api.missing()
        return "; ".join(reasons) if reasons else None

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> TrtBackend:
        """Load the engines of a trt directory, or build (once, cached) those of an onnx one.

        The directory is checked before TensorRT is looked for, so a dry-run directory says so
        on any machine.
        """
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        fmt = (manifest or {}).get("format")
        if fmt not in ("trt", "onnx"):
            raise ModelError(
                f"{model_dir}: not a trt (or onnx) model directory (convert it with dwconvert --to trt)"
            )
        assert manifest is not None
        unknown = sorted(set(config.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"trt backend options {', '.join(unknown)} unknown; it reads {', '.join(OPTIONS)}"
            )
        if fmt == "trt":
            precision = _trt_dir_precision(model_dir, manifest, config)
        else:
            precision = config.precision or DEFAULT_PRECISION
            if precision not in PRECISIONS:
                raise ConfigError(f"trt precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        device = _cuda_device(config.device)
        from dwkit.runtimes import tensorrt_api

        reasons = tensorrt_api.missing()
        if reasons:
            raise BackendUnavailable(f"backend trt: {'; '.join(reasons)}")
        info = ModelInfo.from_dict(manifest["model_info"])
        if fmt == "trt":
            engine_dir, built = model_dir, manifest.get("build") or {}
            _check_build_matches(model_dir, built, tensorrt_api.versions(device))
        else:
            engine_dir = engines_for_onnx_dir(model_dir, manifest, precision, config, device)
        files = {g: engine_dir / _engine_file(g) for g in GRAPHS}
        for path in files.values():
            if not path.is_file():
                raise ModelError(f"{engine_dir}: missing {path.name} (an incomplete build?); rebuild it")
        engines = {g: tensorrt_api.Engine(path, device) for g, path in files.items()}
        return cls(engines, info, precision, device)

    def _check_engines(self) -> None:
        """The engines carry the tensor names this backend binds."""
        for graph in GRAPHS:
            engine = self.engines.get(graph)
            if engine is None:
                raise ModelError(f"trt backend: no {graph} engine")
            expected = graph_io(graph, self.info.decoder_layers)
            if set(engine.inputs) != set(expected.inputs) or set(engine.outputs) != set(expected.outputs):
                raise ModelError(
                    f"{graph} engine: tensors {engine.inputs} -> {engine.outputs} are not dwkit's "
                    f"{expected.inputs} -> {expected.outputs} (rebuild with dwconvert --to trt)"
                )

    # -- running engines ----------------------------------------------------------------------

    def _run(self, graph: str, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run `graph` on `feeds`; batches above its profile's max run in chunks."""
        import torch

        engine, limit = self.engines[graph], self.max_batch[graph]
        batch = next(iter(feeds.values())).shape[0]
        if batch <= limit:
            return dict(engine.run(feeds))
        parts = [
            engine.run({name: value[start : start + limit] for name, value in feeds.items()})
            for start in range(0, batch, limit)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _index(self, rows: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)

    def _tokens(self, tokens: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.ascontiguousarray(tokens, dtype=np.int64), device=self.device)

    # -- encoder ------------------------------------------------------------------------------

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        import torch

        check_mel(mel, self.info)
        features = torch.as_tensor(np.ascontiguousarray(mel, dtype=np.float32), device=self.device)
        states = self._run(ENCODER, {INPUT_FEATURES: features})[ENCODER_STATES]
        return EncoderOutput(data=states, batch_size=mel.shape[0])

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        return EncoderOutput(
            data=enc.data.index_select(0, self._index(np.asarray(rows))), batch_size=len(rows)
        )

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return np.asarray(enc.data.float().cpu().numpy(), dtype=np.float32)

    # -- decoder ------------------------------------------------------------------------------

    def start(self, enc: EncoderOutput, batch_index: np.ndarray) -> _Cache:
        return _Cache(encoder_states=enc.data, rows=np.asarray(batch_index, dtype=np.int64))

    def step(self, tokens: np.ndarray, cache: _Cache) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if cache.self_kv is None:
            return self._prompt(tokens, cache)
        if tokens.shape[1] == 1:
            return self._next(tokens, cache)
        # The step engine takes one token; more after a prefix are fed one at a time.
        return np.concatenate(
            [self._next(tokens[:, i : i + 1], cache) for i in range(tokens.shape[1])], axis=1
        )

    def _prompt(self, tokens: np.ndarray, cache: _Cache) -> np.ndarray:
        """decoder_init once per distinct (audio row, prompt): beams start as copies of one row."""
        keyed = np.concatenate([cache.rows[:, None], tokens], axis=1)
        _, first, inverse = np.unique(keyed, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        distinct = len(first) < len(tokens)
        run_rows = cache.rows[first] if distinct else cache.rows
        run_tokens = tokens[first] if distinct else tokens
        states = cache.encoder_states
        if not np.array_equal(run_rows, np.arange(states.shape[0])):
            states = states.index_select(0, self._index(run_rows))
        out = self._run(DECODER_INIT, {INPUT_IDS: self._tokens(run_tokens), ENCODER_STATES: states})
        logits = out[LOGITS]
        self_kv = [out[name] for name in self._present_names]
        cross_kv = [out[name] for name in self._cross_names]
        if distinct:
            index = self._index(inverse)
            logits = logits.index_select(0, index)
            self_kv = [t.index_select(0, index) for t in self_kv]
            cross_kv = [t.index_select(0, index) for t in cross_kv]
        cache.self_kv, cache.cross_kv = self_kv, cross_kv
        cache.encoder_states = None  # the cross keys/values replace it
        return _host(logits)

    def _next(self, tokens: np.ndarray, cache: _Cache) -> np.ndarray:
        """decoder_step: past -> present, which becomes the next past."""
        assert cache.self_kv is not None and cache.cross_kv is not None
        feeds = {INPUT_IDS: self._tokens(tokens)}
        feeds.update(zip(self._past_names, cache.self_kv))
        feeds.update(zip(self._cross_names, cache.cross_kv))
        out = self._run(DECODER_STEP, feeds)
        cache.self_kv = [out[name] for name in self._present_names]
        return _host(out[LOGITS])

    def reorder(self, cache: _Cache, index: np.ndarray) -> _Cache:
        index = np.asarray(index, dtype=np.int64)
        rows = cache.rows[index]
        if cache.self_kv is not None:
            where = self._index(index)
            cache.self_kv = [t.index_select(0, where) for t in cache.self_kv]
            if not np.array_equal(rows, cache.rows) and cache.cross_kv is not None:  # a row moved audio
                cache.cross_kv = [t.index_select(0, where) for t in cache.cross_kv]
        cache.rows = rows
        return cache


def _host(logits: Any) -> np.ndarray:
    return np.asarray(logits.float().cpu().numpy(), dtype=np.float32)


def _engine_file(graph: str) -> str:
    from dwkit.converters.trt import engine_file

    return engine_file(graph)


def _cuda_device(device: str) -> str:
    if device == "cuda" or device.startswith("cuda:"):
        return "cuda:0" if device == "cuda" else device
    raise ConfigError(f"trt device {device!r}: TensorRT runs on an NVIDIA GPU only (use cuda or cuda:N)")


def _trt_dir_precision(model_dir: Path, manifest: Mapping[str, Any], config: RuntimeConfig) -> str:
    precision = str(manifest.get("precision"))
    if not manifest.get("engines_built"):
        raise ModelError(
            f"{model_dir}: built with --dry-run: no engines; rebuild on a GPU machine with TensorRT "
            f"(dwconvert --to trt --precision {precision} SOURCE OUT, without --dry-run)"
        )
    if config.precision not in (None, precision):
        raise ConfigError(
            f"{model_dir} holds {precision} engines; a trt directory runs at the precision it was built "
            f"with (build again with --precision {config.precision}, or load its onnx directory)"
        )
    building = sorted({"max_batch", "workspace_mib"} & set(config.options))
    if building:
        raise ConfigError(
            f"trt options {', '.join(building)} apply when building engines for an onnx directory; "
            f"{model_dir}'s engines are built (rebuild with dwconvert --to trt --max-batch N)"
        )
    return precision


def _check_build_matches(model_dir: Path, built: Mapping[str, Any], here: Mapping[str, Any]) -> None:
    """Engines run only on the TensorRT version and GPU architecture they were built for."""
    for key, what in (("tensorrt", "TensorRT"), ("compute_capability", "GPU compute capability")):
        if built.get(key) and built.get(key) != here.get(key):
            raise ModelError(
                f"{model_dir}: engines were built for {what} {built[key]}, this machine has {here[key]}; "
                "rebuild them here (dwconvert --to trt --overwrite)"
            )


def default_engine_cache() -> Path:
    from dwkit.bundled import default_cache_dir

    return default_cache_dir() / "trt"


def engines_for_onnx_dir(
    model_dir: Path, manifest: Mapping[str, Any], precision: str, config: RuntimeConfig, device: str
) -> Path:
    """Build (once) the engines of an onnx directory with the same plan dwconvert --to trt
    writes, into the engine cache; returns their directory."""
    from dwkit.bundled import cache_lock
    from dwkit.converters.base import atomic_output_dir
    from dwkit.converters.onnx_graphs import graph_file
    from dwkit.converters.trt import (
        PLAN_FILE,
        PLAN_VERSION,
        build_engines,
        build_plan,
        check_graph,
        check_max_batch,
        check_workspace,
        profiles,
        require_tensorrt,
    )
    from dwkit.runtimes import tensorrt_api

    if manifest.get("precision") != "fp32":
        raise ModelError(
            f"{model_dir}: holds {manifest.get('precision')} onnx graphs; the trt backend builds from fp32 "
            "graphs (convert with --to onnx --precision fp32, or dwconvert --to trt)"
        )
    info = ModelInfo.from_dict(manifest["model_info"])
    max_batch = check_max_batch(config.options.get("max_batch"))
    workspace_mib = check_workspace(config.options.get("workspace_mib"))
    here = tensorrt_api.versions(device)
    key_data = [manifest.get("weights_checksum"), precision, max_batch, workspace_mib, here, PLAN_VERSION]
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(config.options.get("engine_cache") or default_engine_cache()).expanduser()
    target = cache / f"{model_dir.name}-{precision}-b{max_batch}-{key}"
    with cache_lock(cache / f".{target.name}.lock"):
        if not (target / BUILD_FACTS).is_file():
            require_tensorrt("the trt backend")
            with atomic_output_dir(target, overwrite=True) as tmp:
                wanted = profiles(info, max_batch)
                checks = [check_graph(model_dir / graph_file(g), wanted[g]) for g in GRAPHS]
                plan = build_plan(info, precision, max_batch, workspace_mib, checks)
                (tmp / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
                built = build_engines(model_dir, plan, tmp)
                (tmp / BUILD_FACTS).write_text(
                    json.dumps({"source": str(model_dir), **built}, indent=2) + "\n"
                )
    return target


# --- declaration ---------------------------------------------------------------------------

BACKEND = BackendSpec(
    name="trt",
    summary="TensorRT engines built from the onnx export (NVIDIA GPU)",
    backend_class=TrtBackend,
    formats=("trt", "onnx"),  # an onnx directory runs too: its engines are built on first use
    extra="gpu",
    precisions=PRECISIONS,
    default_precision=DEFAULT_PRECISION,
    devices=("cuda",),
    probe=lambda device: TrtBackend.unavailable_reason(),
    requires=("tensorrt",),
    install_hint="needs TensorRT 10 (the tensorrt package, from NVIDIA's index): pip install 'dwkit[gpu]'",
    options=(
        BackendOption("engine_cache", str, "where engines built for an onnx directory are cached"),
        BackendOption("max_batch", int, "largest batch the engines' profiles cover (default 8)"),
        BackendOption("workspace_mib", int, "TensorRT builder workspace in MiB"),
    ),
    weight_files=("*.engine",),
    auto_rank=10,  # on an onnx directory, `auto` prefers TensorRT where it runs
    bench_precision="fp16",
    parity_precision="fp16",
)
