"""TensorRT backend: the encoder / decoder-init / decoder-step engines of `dwkit.converters.trt`.

Decoding (greedy, beam, the logit rules) comes from the shared decoders, and the cache
handling, prompt de-duplication and beam reorder from `graph_steps.GraphStepBackend`, shared
with the onnx backend; this module supplies its torch/TensorRT runner. Engines are reached only through
`dwkit.runtimes.tensorrt_api.Engine`, whose buffers are torch CUDA tensors: encoder states,
the self-attention cache and the cross-attention keys/values stay on the GPU from the engine
that wrote them to the engine that reads them; only token ids go in and logits come out.

Batches larger than an engine's profile run in chunks of its max batch (batch-axis slices of
contiguous tensors are contiguous, so chunks need no copies in).

A model directory is either a trt directory (engines built by dwconvert --to trt) or an onnx
directory: then the engines are built on first use, from the same plan (`dwkit.trt_build`),
into an engine cache
(`options["engine_cache"]`, default `$DWKIT_CACHE/trt` or `~/.cache/dwkit/trt`).

Word timestamps (`cross_attentions`) run the alignment graph's engine, which exists when the
onnx export holds `decoder_align.onnx` (dwconvert --to onnx|trt --word-timestamps).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.manifest import read_manifest
from dwkit.model_info import ModelInfo
from dwkit.onnx_graphs import (
    CROSS_ATTENTIONS,
    DECODER_ALIGN,
    DECODER_INIT,
    DECODER_STEP,
    ENCODER,
    ENCODER_STATES,
    GRAPHS,
    INPUT_FEATURES,
    INPUT_IDS,
    LOGITS,
    cache_names,
    graph_io,
)
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec
from dwkit.runtimes.graph_steps import GraphStepBackend
from dwkit.trt_build import engine_file, engines_for_onnx_dir

PRECISIONS = ("fp16", "bf16", "fp32")
DEFAULT_PRECISION = "fp16"


class TrtBackend(GraphStepBackend):
    name = "trt"
    PRECISIONS = PRECISIONS

    def __init__(self, engines: Mapping[str, Any], info: ModelInfo, precision: str, device: Any):
        """`engines`: graph name -> an object with tensorrt_api.Engine's surface."""
        import torch

        self.engines = dict(engines)
        self.info = info
        self.precision = precision
        self.device = torch.device(device)
        self._check_engines()
        layers = info.decoder_layers
        self.max_batch = {g: e.profile[graph_io(g, layers).inputs[0]][2][0] for g, e in self.engines.items()}
        self.runner = _TorchRunner(self.engines, self.max_batch, layers, self.device)

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
        config.options = BACKEND.parse_options(config.options)  # typed, as declared below
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
            engine_dir = engines_for_onnx_dir(model_dir, manifest, precision, config.options, device)
        files = {g: engine_dir / engine_file(g) for g in GRAPHS}
        for path in files.values():
            if not path.is_file():
                raise ModelError(f"{engine_dir}: missing {path.name} (an incomplete build?); rebuild it")
        if (engine_dir / engine_file(DECODER_ALIGN)).is_file():
            files[DECODER_ALIGN] = engine_dir / engine_file(DECODER_ALIGN)
        engines = {g: tensorrt_api.Engine(path, device) for g, path in files.items()}
        return cls(engines, info, precision, device)

    def _check_engines(self) -> None:
        """The engines carry the tensor names this backend binds (the alignment engine is optional)."""
        for graph in (*GRAPHS, *(g for g in self.engines if g not in GRAPHS)):
            engine = self.engines.get(graph)
            if engine is None:
                raise ModelError(f"trt backend: no {graph} engine")
            expected = graph_io(graph, self.info.decoder_layers)
            if set(engine.inputs) != set(expected.inputs) or set(engine.outputs) != set(expected.outputs):
                raise ModelError(
                    f"{graph} engine: tensors {engine.inputs} -> {engine.outputs} are not dwkit's "
                    f"{expected.inputs} -> {expected.outputs} (rebuild with dwconvert --to trt)"
                )

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        check_mel(mel, self.info)
        features = self.runner.device_tensor(np.ascontiguousarray(mel, dtype=np.float32))
        states = self.runner.run(ENCODER, {INPUT_FEATURES: features})[ENCODER_STATES]
        return EncoderOutput(data=states, batch_size=mel.shape[0])

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return _host(enc.data)


class _TorchRunner:
    """The `GraphRunner` of TensorRT engines: torch tensors on the engines' device, rows
    gathered with index_select, batches above a profile's max run in chunks."""

    def __init__(self, engines: Mapping[str, Any], max_batch: Mapping[str, int], layers: int, device: Any):
        self.engines = engines
        self.max_batch = max_batch
        self.device = device
        self.names = cache_names(layers)

    def device_tensor(self, array: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(array, device=self.device)

    def run(self, graph: str, feeds: dict[str, Any]) -> dict[str, Any]:
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

    def batch_size(self, value: Any) -> int:
        return int(value.shape[0])

    def gather(self, values: list[Any], index: np.ndarray) -> list[Any]:
        where = self.device_tensor(np.asarray(index, dtype=np.int64))
        return [t.index_select(0, where) for t in values]

    def decoder_init(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, list[Any], list[Any]]:
        out = self.run(DECODER_INIT, {INPUT_IDS: self.device_tensor(tokens), ENCODER_STATES: states})
        return (
            _host(out[LOGITS]),
            [out[name] for name in self.names.present],
            [out[name] for name in self.names.cross],
        )

    def decoder_align(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, np.ndarray]:
        if DECODER_ALIGN not in self.engines:
            raise ModelError(
                "trt backend: these engines were built without the cross-attention graph word timestamps "
                "need; build them again with dwconvert --to trt --word-timestamps (or from an onnx export "
                "made with --word-timestamps)"
            )
        out = self.run(DECODER_ALIGN, {INPUT_IDS: self.device_tensor(tokens), ENCODER_STATES: states})
        return _host(out[LOGITS]), _host(out[CROSS_ATTENTIONS])

    def step_context(self, cross_kv: list[Any]) -> dict[str, Any]:
        return dict(zip(self.names.cross, cross_kv))

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[Any], context: Any
    ) -> tuple[np.ndarray, list[Any]]:
        feeds = {INPUT_IDS: self.device_tensor(tokens), **dict(zip(self.names.past, self_kv)), **context}
        out = self.run(DECODER_STEP, feeds)
        return _host(out[LOGITS]), [out[name] for name in self.names.present]


def _host(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.float().cpu().numpy(), dtype=np.float32)


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
        # all three only when it builds the engines of an onnx directory
        BackendOption("engine_cache", str, "where engines built for an onnx directory are cached"),
        BackendOption("max_batch", int, "largest batch the engines' profiles cover (default 8)"),
        BackendOption("workspace_mib", int, "TensorRT builder workspace in MiB"),
    ),
    weight_files=("*.engine",),
    auto_rank=10,  # on an onnx directory, `auto` prefers TensorRT where it runs
    bench_precision="fp16",
    parity_precision="fp16",
)
