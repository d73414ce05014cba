"""OpenVINO backend: the encoder / decoder-init / decoder-step graphs as OpenVINO IR
(`dwconvert --to openvino`), on the CPU plugin.

Decoding (cache handling, prompt de-duplication, beam reorder) is `graph_steps.GraphStepBackend`,
shared with onnx and trt; this module supplies the OpenVINO runner (numpy arrays in and out:
OpenVINO's CPU tensors wrap host memory, so inputs are passed without copies with
`share_inputs`) and the encoder. The cache-in / cache-out step graph was chosen over a
stateful decoder (OpenVINO's ReadValue/Assign state API) because beam search and temperature
fallback reorder and select cache rows between steps, which the shared decoders do on plain
arrays; a stateful model would need a beam-index gather inside the graph.

Precision is the directory's (as converted) and sets the CPU plugin's
INFERENCE_PRECISION_HINT: f32 for fp32 (the plugin defaults to bf16 on CPUs with avx512_bf16
or AMX, so the hint is what keeps fp32 exact), bf16 for bf16, the plugin default for int8
(its quantised layers run int8 kernels: VNNI, AMX where present; the rest bf16 where the CPU
has it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.onnx_graphs import (
    DECODER_INIT,
    DECODER_STEP,
    ENCODER,
    ENCODER_STATES,
    GRAPHS,
    INPUT_FEATURES,
    INPUT_IDS,
    cache_names,
    graph_io,
)
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec
from dwkit.runtimes.graph_steps import (
    GraphStepBackend,
    converted_graphs,
    encoder_left_out,
    graph_file_problems,
    part_graphs,
)

PRECISIONS = ("fp32", "bf16", "int8")
# The CPU plugin's INFERENCE_PRECISION_HINT per precision; None leaves the plugin's default.
INFERENCE_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "int8": None}
PERFORMANCE_HINTS = ("latency", "throughput")


def ir_file(graph: str) -> str:
    return f"{graph}.xml"


def weights_file(graph: str) -> str:
    return f"{graph}.bin"


def check_ir(model_dir: Path, graph: str, decoder_layers: int) -> dict[str, Any]:
    """The IR of `graph` reads and carries dwkit's input/output names; its manifest entry."""
    import openvino as ov

    path = model_dir / ir_file(graph)
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises its own GeneralFailure types
        raise ModelError(f"{path}: OpenVINO could not read it ({exc})") from exc
    inputs = tuple(port.get_any_name() for port in model.inputs)
    outputs = tuple(port.get_any_name() for port in model.outputs)
    expected = graph_io(graph, decoder_layers)
    if inputs != expected.inputs or outputs != expected.outputs:
        raise ModelError(
            f"{path.name}: inputs/outputs {inputs} -> {outputs} are not dwkit's "
            f"{expected.inputs} -> {expected.outputs} (convert with dwconvert --to openvino)"
        )
    weights = model_dir / weights_file(graph)
    return {
        "name": graph,
        "file": path.name,
        "weights": weights.name,
        "bytes": path.stat().st_size + weights.stat().st_size,
        "inputs": [{"name": p.get_any_name(), "shape": str(p.get_partial_shape())} for p in model.inputs],
        "int8_ops": sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize"),
    }


class OpenVinoBackend(GraphStepBackend):
    name = "openvino"
    PRECISIONS = PRECISIONS

    def __init__(self, requests: dict[str, Any], info: ModelInfo, precision: str, inference_precision: str):
        self.info = info
        self.precision = precision
        self.inference_precision = inference_precision  # what the CPU plugin runs (its own name)
        self.requests = requests
        self.runner = _OvRunner(requests, info.decoder_layers)

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> OpenVinoBackend:
        import openvino as ov

        model_dir = Path(model_dir)
        manifest, precision = converted_graphs(model_dir, "openvino", config.precision)
        if config.device != "cpu":
            raise ConfigError(f"openvino device {config.device!r}: dwkit runs OpenVINO on the CPU")
        options = BACKEND.parse_options(config.options)
        info = ModelInfo.from_dict(manifest["model_info"])
        for graph in GRAPHS:
            if not (model_dir / ir_file(graph)).is_file():
                raise ModelError(f"{model_dir}: missing {ir_file(graph)} (an incomplete conversion?)")
        core = ov.Core()
        if options.get("cache_dir"):
            core.set_property({"CACHE_DIR": str(options["cache_dir"])})
        properties = _compile_properties(precision, config, options)
        compiled = {}
        for graph in part_graphs(config.part):
            check_ir(model_dir, graph, info.decoder_layers)
            try:
                compiled[graph] = core.compile_model(str(model_dir / ir_file(graph)), "CPU", properties)
            except Exception as exc:
                raise ModelError(
                    f"{model_dir / ir_file(graph)}: OpenVINO could not compile it ({exc})"
                ) from exc
        first = next(iter(compiled.values()))
        hint = first.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16"
        requests = {graph: model.create_infer_request() for graph, model in compiled.items()}
        return cls(requests, info, precision, hint)

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        check_mel(mel, self.info)
        if ENCODER not in self.requests:
            raise encoder_left_out(self.name)
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        result = self.requests[ENCODER].infer({INPUT_FEATURES: mel}, share_inputs=True)
        return EncoderOutput(data=np.array(result[0], dtype=np.float32), batch_size=mel.shape[0])

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return np.asarray(enc.data, dtype=np.float32)

    def encoder_states_from_array(self, array: np.ndarray) -> EncoderOutput:
        """Another backend's encoder states (an encoder/decoder pair): this backend keeps them as a
        float32 host array, so a float32 one is used as it is (the decoder graphs read it shared)."""
        states = np.ascontiguousarray(array, dtype=np.float32)
        return EncoderOutput(data=states, batch_size=int(states.shape[0]))


class _OvRunner:
    """The `GraphRunner` of OpenVINO: tensors are host numpy arrays, rows gathered with numpy."""

    def __init__(self, requests: dict[str, Any], layers: int):
        self.requests = requests
        self.names = cache_names(layers)

    def batch_size(self, value: np.ndarray) -> int:
        return int(value.shape[0])

    def gather(self, values: list[np.ndarray], index: np.ndarray) -> list[np.ndarray]:
        return [np.take(value, index, axis=0) for value in values]

    def decoder_init(
        self, tokens: np.ndarray, states: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        outputs = self._run(DECODER_INIT, {INPUT_IDS: tokens, ENCODER_STATES: states})
        n = len(self.names.present)
        return outputs[0], outputs[1 : 1 + n], outputs[1 + n :]

    def step_context(self, cross_kv: list[np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names.cross, cross_kv))

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[np.ndarray], context: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        inputs = {INPUT_IDS: tokens, **dict(zip(self.names.past, self_kv)), **context}
        outputs = self._run(DECODER_STEP, inputs)
        return outputs[0], outputs[1:]

    def _run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in graph order, copied out of the request (its buffers are reused next call)."""
        result = self.requests[graph].infer(
            {name: np.ascontiguousarray(value) for name, value in inputs.items()}, share_inputs=True
        )
        return [np.array(value, dtype=np.float32) for value in result.to_tuple()]


def _compile_properties(precision: str, config: RuntimeConfig, options: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "PERFORMANCE_HINT": str(options.get("performance_hint") or "latency").upper(),
        "NUM_STREAMS": "1",
    }
    hint = INFERENCE_HINTS[precision]
    if hint is not None:
        properties["INFERENCE_PRECISION_HINT"] = hint
    if config.threads:
        properties["INFERENCE_NUM_THREADS"] = int(config.threads)
    return properties


# --- declaration ---------------------------------------------------------------------------


def _probe(device: str) -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "needs openvino: pip install 'dwkit[openvino]'"
    return None


BACKEND = BackendSpec(
    name="openvino",
    summary="OpenVINO (CPU plugin) on dwkit's encoder / decoder-init / decoder-step graphs",
    backend_class=OpenVinoBackend,
    formats=("openvino",),
    extra="openvino",
    precisions=PRECISIONS,
    fixed_precision=True,
    devices=("cpu",),
    probe=_probe,
    requires=("openvino",),
    options=(
        BackendOption("cache_dir", str, "directory where OpenVINO caches compiled models"),
        BackendOption("performance_hint", str, "OpenVINO's PERFORMANCE_HINT", PERFORMANCE_HINTS),
    ),
    weight_files=("*.xml", "*.bin"),
    file_problems=graph_file_problems,
    bench_precision="int8",
    parity_precision="fp32",
)
