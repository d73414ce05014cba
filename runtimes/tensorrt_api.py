"""Every call dwkit makes into TensorRT, in one small module (TensorRT 10.x Python API).

TensorRT cannot be installed on the machines this project is developed on, so nothing here
has run against a real TensorRT yet: the code follows TensorRT 10's documented Python API,
and `selftest()` (`python -m dwkit.runtimes.tensorrt_api`) exercises all of it in seconds on
an NVIDIA machine: it builds a small dynamic-batch graph in fp32 and fp16, runs it on torch
CUDA buffers and compares it with numpy. The rest of dwkit reaches TensorRT only through:

- `missing()`: what stops TensorRT engines from being built or run here (no import);
- `build_engine(onnx_path, engine_path, spec)`: ONNX graph -> serialised engine file;
- `Engine(path, device)`: a deserialised engine with one execution context; `run(feeds)`
  takes and returns torch tensors on the device (torch's caching allocator owns every
  buffer, and TensorRT runs on torch's current stream, so ordering with torch ops holds);
- `versions()`: TensorRT version and GPU, recorded with built engines.

Why weakly typed networks with precision flags: TensorRT 10 builds fp16/bf16 engines from
fp32 graphs with `BuilderFlag.FP16`/`BF16`. Those flags are deprecated from 10.12 and gone in
TensorRT 11 (strong typing only), so this module refuses TensorRT 11 with that reason.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.errors import BackendUnavailable, ConversionError, ModelError

SUPPORTED_MAJOR = 10
NOT_INSTALLED = "tensorrt not installed (pip install 'dwkit[gpu]' on an NVIDIA machine)"
NO_GPU = "no CUDA GPU (no NVIDIA GPU visible to this process)"
NO_TORCH_CUDA = (
    "torch has no CUDA support (the trt backend keeps its buffers in torch CUDA tensors: "
    "install a CUDA build of torch)"
)


@dataclass
class EngineSpec:
    """What one engine is built with; the build plan (dwkit/trt_build.py) holds these as data.

    `profile`: input name -> {"min", "opt", "max"} shapes (one optimisation profile).
    `flags` / `cleared_flags`: `trt.BuilderFlag` member names to set / clear.
    `fp32_layers`: `trt.LayerType` member names whose layers are kept in float32 when a
    reduced-precision flag is set (layer norm and softmax overflow or lose small
    probabilities in fp16).
    """

    profile: Mapping[str, Mapping[str, Sequence[int]]]
    flags: Sequence[str] = ()
    cleared_flags: Sequence[str] = ()
    fp32_layers: Sequence[str] = ()
    precision_constraints: str | None = None  # "PREFER" or "OBEY" (BuilderFlag.*_PRECISION_CONSTRAINTS)
    workspace_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- availability -----------------------------------------------------------------------------


def missing() -> list[str]:
    """What stops TensorRT engines from being built or run here; empty when nothing does.

    Imports nothing heavy: the tensorrt module is looked up, not imported, and torch only
    when an NVIDIA GPU is visible.
    """
    from dwkit import devices

    reasons = []
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append(NOT_INSTALLED)
    if not devices.nvidia_gpu_present():
        reasons.append(NO_GPU)
    elif not _torch_cuda():
        reasons.append(NO_TORCH_CUDA)
    return reasons


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def trt_module() -> Any:
    """The tensorrt module, checked to be a TensorRT 10.x this module was written for."""
    try:
        import tensorrt as trt
    except ImportError as exc:  # the PyPI stub fails here when NVIDIA's index was unreachable
        raise BackendUnavailable(f"{NOT_INSTALLED}: {exc}") from exc
    version = str(getattr(trt, "__version__", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major != SUPPORTED_MAJOR:
        raise BackendUnavailable(
            f"TensorRT {version}: dwkit builds engines with TensorRT {SUPPORTED_MAJOR}.x "
            "(TensorRT 11 removed the FP16/BF16 builder flags it uses): pip install 'tensorrt>=10,<11'"
        )
    return trt


_LOGGER: Any = None


def _logger() -> Any:
    """One logger per process (TensorRT expects the same logger for builder and runtime)."""
    global _LOGGER
    if _LOGGER is None:
        trt = trt_module()
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def versions(device: Any = None) -> dict[str, Any]:
    """TensorRT version and the GPU engines are built for (engines run only on the same pair)."""
    import torch

    trt = trt_module()
    index = torch.device(device or "cuda").index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "tensorrt": str(trt.__version__),
        "gpu": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
    }


# -- build --------------------------------------------------------------------------------------


def build_engine(onnx_path: Path, engine_path: Path, spec: EngineSpec) -> dict[str, Any]:
    """Parse `onnx_path` (external data beside it is found by the parser), build one engine with
    `spec`'s profile and flags, and write it to `engine_path`. Returns build facts."""
    trt = trt_module()
    started = time.perf_counter()
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(f"{Path(onnx_path).name}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    kept = _configure(trt, config, network, spec)
    config.add_optimization_profile(_profile(builder, network, spec, Path(onnx_path).name))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(
            f"{Path(onnx_path).name}: TensorRT could not build an engine (its log above says why)"
        )
    engine_path = Path(engine_path)
    with open(engine_path, "wb") as handle:
        handle.write(serialized)
    return {
        "file": engine_path.name,
        "bytes": engine_path.stat().st_size,
        "layers": int(network.num_layers),
        "fp32_layers_kept": kept,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _configure(trt: Any, config: Any, network: Any, spec: EngineSpec) -> int:
    """Workspace, builder flags and float32 layers of `spec`; returns how many layers were kept."""
    if spec.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_bytes))
    for name in spec.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in spec.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    kept = _keep_fp32(trt, network, spec.fp32_layers) if spec.fp32_layers else 0
    if kept and spec.precision_constraints:
        config.set_flag(getattr(trt.BuilderFlag, f"{spec.precision_constraints}_PRECISION_CONSTRAINTS"))
    return kept


def _profile(builder: Any, network: Any, spec: EngineSpec, name: str) -> Any:
    """The optimisation profile of `spec`, which must name exactly the network's inputs."""
    profile = builder.create_optimization_profile()
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(inputs) != sorted(spec.profile):
        raise ConversionError(
            f"{name}: network inputs {inputs} differ from the plan's profile {sorted(spec.profile)}"
        )
    for input_name in inputs:
        shapes = spec.profile[input_name]
        profile.set_shape(input_name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    return profile


def _parser_error(error: Any) -> str:
    """One parser error as text: the node and its operator when TensorRT names them."""
    try:
        node, op = error.node_name(), error.node_operator()
        return f"node {node!r} ({op}): {error.desc()}" if node or op else str(error.desc())
    except AttributeError:  # older bindings: the object prints itself
        return str(error)


def _keep_fp32(trt: Any, network: Any, layer_types: Sequence[str]) -> int:
    """Pin layers of `layer_types` (trt.LayerType names) to float32; returns how many."""
    wanted = {getattr(trt.LayerType, name) for name in layer_types}
    kept = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in wanted:
            layer.precision = trt.DataType.FLOAT
            for out in range(layer.num_outputs):
                layer.set_output_type(out, trt.DataType.FLOAT)
            kept += 1
    return kept


# -- run ----------------------------------------------------------------------------------------


def torch_dtype(trt_dtype: Any) -> Any:
    """torch dtype of a TensorRT DataType."""
    import torch

    trt = trt_module()
    names = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
    }
    for name, dtype in names.items():
        if getattr(trt.DataType, name, None) == trt_dtype:
            return dtype
    raise ModelError(f"TensorRT tensor type {trt_dtype} has no torch equivalent")


class Engine:
    """A deserialised engine with one execution context, fed and read through torch tensors.

    `inputs`/`outputs`: tensor names in engine order; `dtypes`: name -> torch dtype;
    `profile`: input name -> (min, opt, max) shapes of optimisation profile 0.
    The backend (runtimes/trt.py) depends on exactly these attributes and `run`, so a stand-in
    with the same surface (the CPU tests use one over onnxruntime) runs the same backend code.
    """

    def __init__(self, path: Path, device: Any = "cuda"):
        import torch

        trt = trt_module()
        self.path = Path(path)
        self.device = torch.device(device)
        self._runtime = trt.Runtime(_logger())
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelError(
                f"{self.path}: TensorRT could not load this engine (built by another TensorRT "
                "version or for another GPU?); rebuild it with dwconvert --to trt"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"{self.path}: TensorRT could not create an execution context (GPU memory?)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = tuple(n for n in names if is_input[n])
        self.outputs = tuple(n for n in names if not is_input[n])
        self.dtypes = {n: torch_dtype(self._engine.get_tensor_dtype(n)) for n in names}
        self.profile = {
            n: tuple(tuple(int(d) for d in shape) for shape in self._engine.get_tensor_profile_shape(n, 0))
            for n in self.inputs
        }

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run once on `feeds` (name -> torch tensor); returns name -> new torch tensor."""
        import torch

        context = self._context
        kept = []  # converted inputs stay referenced until the launch is queued
        for name in self.inputs:
            tensor = feeds[name]
            if (
                tensor.dtype != self.dtypes[name]
                or tensor.device != self.device
                or not tensor.is_contiguous()
            ):
                tensor = tensor.to(self.device, self.dtypes[name]).contiguous()
            kept.append(tensor)
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise ModelError(
                    f"{self.path.name}: input {name} of shape {tuple(tensor.shape)} is outside the "
                    f"engine's optimisation profile {self.profile[name]}"
                )
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelError(f"{self.path.name}: output {name} has an unresolved shape {shape}")
            out = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        # torch's current stream keeps TensorRT ordered with the torch ops around it (a CPU
        # device, which only the tests' stand-in TensorRT accepts, has no stream: 0).
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else 0
        if not context.execute_async_v3(stream):
            raise ModelError(f"{self.path.name}: TensorRT failed to run the engine")
        del kept  # stream-ordered: torch reuses their memory only for later work on this stream
        return outputs


# -- self test ----------------------------------------------------------------------------------


def selftest(work_dir: Path | None = None) -> dict[str, Any]:
    """Build and run a small dynamic-batch graph (MatMul, LayerNormalization, Softmax, Gather on
    int64 ids) in fp32 and fp16 on torch CUDA buffers; compare with numpy.

    This exercises every TensorRT call dwkit makes (parse, profile, flags, fp32 layers,
    serialise, deserialise, shapes, addresses, execute_async_v3) in seconds.
    """
    import tempfile

    import numpy as np
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    vocab, width = 50, 16
    table = rng.standard_normal((vocab, width)).astype(np.float32)
    weight = rng.standard_normal((width, width)).astype(np.float32) / 4
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
        helper.make_node("MatMul", ["emb", "weight"], ["proj"]),
        helper.make_node("LayerNormalization", ["proj", "gamma", "beta"], ["norm"], axis=-1),
        helper.make_node("Softmax", ["norm"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "dwkit_selftest",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "length", width])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.ones(width, np.float32), "gamma"),
            numpy_helper.from_array(np.zeros(width, np.float32), "beta"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    ids = rng.integers(0, vocab, size=(3, 5))
    proj = table[ids] @ weight
    norm = (proj - proj.mean(-1, keepdims=True)) / np.sqrt(proj.var(-1, keepdims=True) + 1e-5)
    expected = np.exp(norm) / np.exp(norm).sum(-1, keepdims=True)
    profile = {"ids": {"min": [1, 1], "opt": [4, 8], "max": [8, 16]}}
    report: dict[str, Any] = {**versions()}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        onnx_path = Path(tmp) / "selftest.onnx"
        onnx.save_model(model, str(onnx_path))
        for precision, flags in (("fp32", ()), ("fp16", ("FP16",))):
            spec = EngineSpec(
                profile=profile,
                flags=flags,
                cleared_flags=("TF32",) if precision == "fp32" else (),
                fp32_layers=("NORMALIZATION", "SOFTMAX") if flags else (),
                precision_constraints="PREFER" if flags else None,
                workspace_bytes=1 << 28,
            )
            built = build_engine(onnx_path, Path(tmp) / f"selftest-{precision}.engine", spec)
            engine = Engine(Path(tmp) / built["file"], "cuda")
            out = engine.run({"ids": torch.from_numpy(ids).cuda()})["probs"]
            torch.cuda.synchronize()
            report[precision] = {
                "max_abs": float(np.abs(out.float().cpu().numpy() - expected).max()),
                "build": built,
            }
    return report


if __name__ == "__main__":  # pragma: no cover - needs TensorRT and a GPU
    import json
    import sys

    reasons = missing()
    if reasons:
        print(f"tensorrt_api selftest: {'; '.join(reasons)}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(selftest(), indent=2))
