"""onnxruntime backend: the encoder / decoder-init / decoder-step graphs of `dwkit.converters.onnx`.

Decoding (cache handling, prompt de-duplication, beam reorder) is `graph_steps.GraphStepBackend`,
shared with the trt backend; this module supplies its onnxruntime runner and the encoder.
Every call goes through onnxruntime's IO binding: encoder states and the key/value caches stay
`OrtValue`s on the execution device from the graph that wrote them to the graph that reads
them, and only token ids (in) and logits (out) cross to the host. Row selection (temperature
fallback, beam reordering) runs a one-node Gather graph on the same device, so no cache
tensor is ever copied through numpy. Beams of one audio share its cross-attention keys and
values, so a reorder that keeps every row on its own audio gathers the self-attention cache
only. The alignment graph of an export made for word timestamps (`decoder_align.onnx`) is
loaded on first use by `cross_attentions`, so decoding loads and runs as without it.

Providers: CPU by default; `device="cuda[:N]"` runs the CUDA execution provider, and
`options={"provider": "tensorrt", "trt_engine_cache": dir, "trt_fp16": bool}` the TensorRT
one (onnxruntime-gpu, the `[gpu]` extra). TensorRT gets one optimisation profile per graph
(`dwkit.onnx_graphs.profiles`, as dwconvert --to trt), sized from the model and
`RuntimeConfig.batch_size`, so growing caches never rebuild engines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
    graph_file,
    graph_io,
    profiles,
)
from dwkit.runtimes import onnx_optimum
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec
from dwkit.runtimes.graph_steps import (
    GraphStepBackend,
    converted_graphs,
    encoder_left_out,
    graph_file_problems,
    part_graphs,
)

PRECISIONS = ("fp32", "fp16", "int8")
PROVIDERS = ("cpu", "cuda", "tensorrt")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class _Place:
    """Where OrtValues live: onnxruntime's device type name and index."""

    device: str = "cpu"
    index: int = 0


class OnnxBackend(GraphStepBackend):
    name = "onnx"
    PRECISIONS = PRECISIONS

    def __init__(
        self,
        sessions: dict[str, Any],
        gather: Any,
        info: ModelInfo,
        precision: str,
        place: _Place,
        align: Callable[[], Any] | str = "this model",
    ):
        """`align`: loads the alignment graph's session, or (a str) the model that has none."""
        self.sessions = sessions
        self.info = info
        self.precision = precision
        self.place = place
        self.runner = _OrtRunner(sessions, gather, info.decoder_layers, place, align)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "needs onnxruntime: pip install 'dwkit[onnx]' (onnxruntime-gpu for CUDA: 'dwkit[gpu]')"
        return None

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> OnnxBackend:
        model_dir = Path(model_dir)
        config.options = BACKEND.parse_options(config.options)  # typed, as declared below
        if not read_manifest(model_dir) and onnx_optimum.is_optimum_export(model_dir):
            return onnx_optimum.OptimumOnnxBackend.from_model_dir(model_dir, config)
        if config.options.get("decoder") not in (None, "auto"):
            raise ConfigError(
                f"{model_dir}: onnx option decoder applies to optimum exports; dwkit's graphs have one layout"
            )
        manifest, precision = converted_graphs(model_dir, "onnx", config.precision)
        info = ModelInfo.from_dict(manifest["model_info"])
        for graph in GRAPHS:
            if not (model_dir / graph_file(graph)).is_file():
                raise ModelError(f"{model_dir}: missing {graph_file(graph)} (an incomplete conversion?)")
        provider, place = _provider_and_place(config)
        options = _session_options(config)
        sessions = {
            graph: _session(model_dir, graph, provider, place, info, config, options)
            for graph in part_graphs(config.part)
        }
        gather_providers = _providers("cuda" if provider != "cpu" else "cpu", place, None, config)
        gather = _GatherRows(2 * info.decoder_layers, options, gather_providers, place)
        align: Callable[[], Any] | str = str(model_dir)
        if (model_dir / graph_file(DECODER_ALIGN)).is_file():
            align = partial(_session, model_dir, DECODER_ALIGN, provider, place, info, config, options)
        backend = cls(sessions, gather, info, precision, place, align)
        backend._check_graphs()
        return backend

    def _check_graphs(self) -> None:
        """The graphs carry the names this backend binds (a directory from another tool would not)."""
        for graph, session in self.sessions.items():
            check_session(graph, session, self.info.decoder_layers)

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        check_mel(mel, self.info)
        if ENCODER not in self.sessions:
            raise encoder_left_out(self.name)
        session = self.sessions[ENCODER]
        binding = session.io_binding()
        binding.bind_cpu_input(INPUT_FEATURES, np.ascontiguousarray(mel, dtype=np.float32))
        binding.bind_output(ENCODER_STATES, self.place.device, self.place.index)
        session.run_with_iobinding(binding)
        return EncoderOutput(data=binding.get_outputs()[0], batch_size=mel.shape[0])

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return np.asarray(enc.data.numpy(), dtype=np.float32)

    def encoder_states_from_array(self, array: np.ndarray) -> EncoderOutput:
        """Another backend's encoder states (an encoder/decoder pair) as an OrtValue: on the CPU
        it wraps the array's buffer (and keeps the array alive); on a GPU it is one upload."""
        import onnxruntime as ort

        states = np.ascontiguousarray(array, dtype=np.float32)
        value = ort.OrtValue.ortvalue_from_numpy(states, self.place.device, self.place.index)
        return EncoderOutput(data=value, batch_size=int(states.shape[0]))


def check_session(graph: str, session: Any, layers: int) -> None:
    """`session` carries the names this backend binds (a directory from another tool would not)."""
    expected = graph_io(graph, layers)
    inputs = tuple(i.name for i in session.get_inputs())
    outputs = tuple(o.name for o in session.get_outputs())
    if inputs != expected.inputs or outputs != expected.outputs:
        raise ModelError(
            f"{graph_file(graph)}: inputs/outputs {inputs} -> {outputs} are not dwkit's "
            f"{expected.inputs} -> {expected.outputs} (convert with dwconvert --to onnx)"
        )


class _OrtRunner:
    """The `GraphRunner` of onnxruntime: every call goes through an IO binding, so cache
    OrtValues stay on the execution device and only token ids and logits cross to the host."""

    def __init__(
        self,
        sessions: dict[str, Any],
        gather: Any,
        layers: int,
        place: _Place,
        align: Callable[[], Any] | str,
    ):
        self.sessions = sessions
        self.gather = gather
        self.place = place
        self.layers = layers
        self.names = cache_names(layers)
        self.align = align
        self._align_session: Any = None

    def batch_size(self, value: Any) -> int:
        return int(value.shape()[0])

    def decoder_init(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, list[Any], list[Any]]:
        session = self.sessions[DECODER_INIT]
        binding = session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, tokens)
        binding.bind_ortvalue_input(ENCODER_STATES, states)
        binding.bind_output(LOGITS, "cpu")
        for name in (*self.names.present, *self.names.cross):
            binding.bind_output(name, self.place.device, self.place.index)
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        n = len(self.names.present)
        return outputs[0].numpy(), list(outputs[1 : 1 + n]), list(outputs[1 + n :])

    def decoder_align(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, np.ndarray]:
        if self._align_session is None:
            if isinstance(self.align, str):
                raise ModelError(
                    f"{self.align}: exported without {graph_file(DECODER_ALIGN)}, the cross-attention graph "
                    "word timestamps need; export it again with dwconvert --to onnx --word-timestamps"
                )
            session = self.align()
            check_session(DECODER_ALIGN, session, self.layers)
            self._align_session = session
        session = self._align_session
        binding = session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, tokens)
        binding.bind_ortvalue_input(ENCODER_STATES, states)
        binding.bind_output(LOGITS, "cpu")
        binding.bind_output(CROSS_ATTENTIONS, "cpu")
        session.run_with_iobinding(binding)
        logits, weights = binding.get_outputs()
        return logits.numpy(), weights.numpy()

    def step_context(self, cross_kv: list[Any]) -> Any:
        """The decoder-step IO binding with the cross K/V bound once for the whole decode."""
        binding = self.sessions[DECODER_STEP].io_binding()
        for name, value in zip(self.names.cross, cross_kv):
            binding.bind_ortvalue_input(name, value)
        return binding

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[Any], context: Any
    ) -> tuple[np.ndarray, list[Any]]:
        """The hot loop, so only the changing inputs are re-bound."""
        binding = context
        binding.bind_cpu_input(INPUT_IDS, tokens)
        for name, value in zip(self.names.past, self_kv):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(LOGITS, "cpu")
        for name in self.names.present:
            binding.bind_output(name, self.place.device, self.place.index)
        self.sessions[DECODER_STEP].run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), list(outputs[1:])


def _session(
    model_dir: Path,
    graph: str,
    provider: str,
    place: _Place,
    info: ModelInfo,
    config: RuntimeConfig,
    options: Any,
) -> Any:
    providers = _providers(provider, place, _trt_profile(graph, info, config), config)
    return open_session(model_dir / graph_file(graph), provider, providers, options, config)


def open_session(path: Path, provider: str, providers: list[Any], options: Any, config: RuntimeConfig) -> Any:
    """One graph's InferenceSession; a graph onnxruntime cannot load is a ModelError naming it."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"{path}: onnxruntime could not load it ({exc})") from exc
    if provider != "cpu" and "CUDAExecutionProvider" not in session.get_providers():
        raise BackendUnavailable(f"onnx on {config.device}: onnxruntime sees no CUDA device")
    return session


class _GatherRows:
    """Rows of OrtValues on their own device: one Gather node per tensor, batch axis 0.

    One session per tensor count and element type (float, or float16 for fp16 exports of other
    tools), built in memory; inputs have no fixed rank, so the same session gathers encoder
    states [B, frames, d] and caches [B, heads, T, head_dim].
    """

    def __init__(self, max_tensors: int, options: Any, providers: list[Any], place: _Place):
        self.options = options
        self.providers = providers
        self.place = place
        self.max_tensors = max_tensors
        self._sessions: dict[tuple[int, str], Any] = {}

    def __call__(self, values: list[Any], index: np.ndarray) -> list[Any]:
        session = self._session(len(values), values[0].data_type())
        binding = session.io_binding()
        binding.bind_cpu_input("index", np.ascontiguousarray(index, dtype=np.int64))
        for i, value in enumerate(values):
            binding.bind_ortvalue_input(f"x{i}", value)
            binding.bind_output(f"y{i}", self.place.device, self.place.index)
        session.run_with_iobinding(binding)
        return list(binding.get_outputs())

    def _session(self, count: int, data_type: str) -> Any:
        if (count, data_type) not in self._sessions:
            import onnxruntime as ort
            from onnx import TensorProto, helper

            elem = TensorProto.FLOAT16 if data_type == "tensor(float16)" else TensorProto.FLOAT
            inputs = [helper.make_tensor_value_info(f"x{i}", elem, None) for i in range(count)]
            inputs.append(helper.make_tensor_value_info("index", TensorProto.INT64, ["rows"]))
            outputs = [helper.make_tensor_value_info(f"y{i}", elem, None) for i in range(count)]
            nodes = [helper.make_node("Gather", [f"x{i}", "index"], [f"y{i}"], axis=0) for i in range(count)]
            graph = helper.make_graph(nodes, "gather_rows", inputs, outputs)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
            model.ir_version = 8  # readable by every onnxruntime >= 1.14
            self._sessions[count, data_type] = ort.InferenceSession(
                model.SerializeToString(), sess_options=self.options, providers=self.providers
            )
        return self._sessions[count, data_type]


def _provider_and_place(config: RuntimeConfig) -> tuple[str, _Place]:
    device = config.device
    if device == "cpu":
        default = "cpu"
    elif device == "cuda" or device.startswith("cuda:"):
        default = "cuda"
    else:
        raise ConfigError(f"onnx device {device!r}: use cpu, cuda or cuda:N")
    provider = str(config.options.get("provider", default))
    if provider not in PROVIDERS:
        raise ConfigError(f"onnx provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    if (provider == "cpu") != (device == "cpu"):
        raise ConfigError(f"onnx provider {provider} does not run on device {device}")
    if provider == "cpu":
        return provider, _Place()
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable(
            f"onnx on {device} needs onnxruntime-gpu: pip uninstall onnxruntime && pip install 'dwkit[gpu]'"
        )
    if provider == "tensorrt" and "TensorrtExecutionProvider" not in available:
        raise BackendUnavailable(
            "onnx provider tensorrt needs onnxruntime-gpu built with TensorRT and TensorRT 10"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return provider, _Place("cuda", index)


def _providers(
    provider: str, place: _Place, profile: dict[str, str] | None, config: RuntimeConfig
) -> list[Any]:
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": place.index})
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    cache_dir = config.options.get("trt_engine_cache")
    trt: dict[str, Any] = {
        "device_id": place.index,
        "trt_fp16_enable": _flag(config.options.get("trt_fp16", False)),
        "trt_engine_cache_enable": cache_dir is not None,
        "trt_timing_cache_enable": cache_dir is not None,
        **(profile or {}),
    }
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        trt["trt_engine_cache_path"] = str(cache_dir)
        trt["trt_timing_cache_path"] = str(cache_dir)
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


def _trt_profile(graph: str, info: ModelInfo, config: RuntimeConfig) -> dict[str, str]:
    """TensorRT min/opt/max input shapes (`dwkit.onnx_graphs.profiles`, the ones dwconvert --to
    trt builds with) in the provider's option syntax: without them every new cache length
    builds an engine. Decoders cover `max_batch` rows (beams), the encoder the audio batch."""
    batch = max(1, config.batch_size)
    max_batch = int(config.options.get("max_batch", batch * 5))
    profile = profiles(info, max_batch, opt_batch=batch, encoder_max_batch=min(batch, max_batch))[graph]

    def shapes(key: str) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in bounds[key])}" for name, bounds in profile.items())

    return {f"trt_profile_{key}_shapes": shapes(key) for key in ("min", "opt", "max")}


def _session_options(config: RuntimeConfig) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if config.threads:
        options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = max(1, config.inter_threads)
    level = str(config.options.get("graph_optimization", "all"))
    if level not in OPTIMIZATION_LEVELS:
        raise ConfigError(
            f"onnx graph_optimization {level!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    spinning = config.options.get("allow_spinning")
    if spinning is None:  # a shared machine asks for passive waiting this way (tests/conftest.py)
        spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    spinning = _flag(spinning)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only: its fallback notices are not the user's problem
    return options


def _flag(value: Any) -> bool:
    """A boolean option from a config file, the CLI or Python ("false" is False)."""
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"onnx option value {value!r}: expected true or false")
    return bool(value)


# --- declaration ---------------------------------------------------------------------------


def _probe(device: str) -> str | None:
    reason = OnnxBackend.unavailable_reason()
    if reason or not device.startswith("cuda"):
        return reason
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "needs onnxruntime-gpu: 'dwkit[gpu]'"
    return None


BACKEND = BackendSpec(
    name="onnx",
    summary="onnxruntime on dwkit's encoder / decoder-init / decoder-step graphs, or an optimum export",
    backend_class=OnnxBackend,
    formats=("onnx",),
    extra="onnx",
    precisions=PRECISIONS,
    aliases=onnx_optimum.EXTRA_PRECISIONS,  # variants only optimum / onnx-community exports carry
    fixed_precision=True,
    devices=("cpu", "cuda"),
    probe=_probe,
    requires=("onnxruntime",),
    options=(
        BackendOption("provider", str, "execution provider (default: from the device)", PROVIDERS),
        BackendOption("graph_optimization", str, "onnxruntime graph optimisation level", OPTIMIZATION_LEVELS),
        BackendOption("allow_spinning", bool, "intra-op threads spin while idle"),
        BackendOption("trt_engine_cache", str, "directory for the TensorRT provider's engines"),
        BackendOption("trt_fp16", bool, "let the TensorRT provider run fp16 kernels on fp32 graphs"),
        BackendOption("max_batch", int, "largest decoder batch the TensorRT provider's profiles cover"),
        BackendOption(
            "decoder",
            str,
            "optimum exports: split decoder graphs or the merged one",
            onnx_optimum.DECODER_LAYOUTS,
        ),
    ),
    weight_files=(
        "*.onnx",
        "*.onnx_data",
        f"{onnx_optimum.SUBFOLDER}/*.onnx",
        f"{onnx_optimum.SUBFOLDER}/*.onnx_data",
    ),
    file_problems=graph_file_problems,
    recognise=onnx_optimum.is_optimum_export,
    recognise_rank=10,  # above hf: an optimum export carries a config.json too
    bench_precision="fp32",
    parity_precision="fp32",
)
