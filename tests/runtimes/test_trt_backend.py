"""The TensorRT backend and every TensorRT call dwkit makes, run here on a stand-in `tensorrt`
module: it records what the builder is asked for (flags, profiles, float32 layers, workspace)
and "builds" an engine that runs the same graph in onnxruntime, reading its inputs from and
writing its outputs to the raw device addresses it is given, refusing shapes outside the
profile. So conversion, plan, engine files, loading, cache handling, chunked batches and beam
reordering are all checked on CPU; only TensorRT itself is not. Real engines need TensorRT and
an NVIDIA GPU: those tests are marked gpu and skip with the reason."""

from __future__ import annotations

import ctypes
import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from dwkit import devices  # noqa: E402
from dwkit.audio import load_audio  # noqa: E402
from dwkit.compare import compare_backends  # noqa: E402
from dwkit.converters import convert  # noqa: E402
from dwkit.decoding.options import DecodeOptions  # noqa: E402
from dwkit.errors import BackendUnavailable, ConfigError, ModelError  # noqa: E402
from dwkit.features import log_mel  # noqa: E402
from dwkit.manifest import read_manifest, write_manifest  # noqa: E402
from dwkit.model_info import ModelInfo  # noqa: E402
from dwkit.onnx_graphs import GRAPHS  # noqa: E402
from dwkit.runtimes import load, spec, tensorrt_api  # noqa: E402
from dwkit.runtimes import trt as trt_runtime  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.onnx import OnnxBackend  # noqa: E402
from dwkit.runtimes.trt import TrtBackend  # noqa: E402
from dwkit.tokenizer import Tokenizer  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402

RUNTIME = RuntimeConfig(threads=2)
# WER of the trt fp16 transcript of speech_short against transformers fp32's.
FP16_WER_MAX = 0.1
MAX_BATCH = 2  # small, so that beams and several windows run in chunks


# -- a stand-in tensorrt module -------------------------------------------------------------------


class _Enum:
    """An enum whose members are their own names."""

    def __init__(self, *names: str):
        for name in names:
            setattr(self, name, name)


def stand_in_tensorrt(record: dict[str, Any]) -> types.ModuleType:
    """The subset of TensorRT 10's Python API that tensorrt_api uses, over onnxruntime."""
    import onnx
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"  # type: ignore[attr-defined]
    trt.BuilderFlag = _Enum(
        "FP16", "BF16", "TF32", "PREFER_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS"
    )  # type: ignore[attr-defined]
    trt.LayerType = _Enum("NORMALIZATION", "SOFTMAX", "OTHER")  # type: ignore[attr-defined]
    trt.DataType = _Enum("FLOAT", "HALF", "BF16", "INT32", "INT64", "INT8", "BOOL", "UINT8")  # type: ignore[attr-defined]
    trt.MemoryPoolType = _Enum("WORKSPACE")  # type: ignore[attr-defined]
    trt.TensorIOMode = _Enum("INPUT", "OUTPUT")  # type: ignore[attr-defined]
    numpy_types = {"FLOAT": np.float32, "INT64": np.int64}
    models: dict[str, bytes] = {}  # engine key -> the onnx graph it runs
    sessions: dict[str, Any] = {}

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str):
            self.severity = severity

    class Layer:
        def __init__(self, op: str):
            self.type = {"LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX"}.get(op, "OTHER")
            self.num_outputs = 1
            self.precision = None
            self.output_types: dict[int, str] = {}

        def set_output_type(self, index: int, dtype: str) -> None:
            self.output_types[index] = dtype

    class Network:
        def __init__(self, flags: int):
            self.flags, self.inputs, self.layers, self.path, self.data = flags, [], [], None, b""

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_input(self, i: int) -> Any:
            return types.SimpleNamespace(name=self.inputs[i])

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            data = Path(path).read_bytes()
            model = onnx.load_from_string(data)
            self.network.inputs = [v.name for v in model.graph.input]
            self.network.layers = [Layer(n.op_type) for n in model.graph.node]
            self.network.path, self.network.data = path, data
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:  # type: ignore[type-arg]
            self.shapes[name] = [list(low), list(opt), list(high)]

    class Config:
        def __init__(self) -> None:
            self.flags, self.pools, self.profiles = {"TF32"}, {}, []  # TF32 is on by default

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: str) -> None:
            self.flags.discard(flag)

        def add_optimization_profile(self, profile: Profile) -> None:
            self.profiles.append(profile)

    class Builder:
        def __init__(self, logger: Logger):
            self.logger = logger

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            name = Path(network.path).stem
            kept = [layer for layer in network.layers if layer.precision is not None]
            record.setdefault("builds", []).append(
                {
                    "graph": name,
                    "network_flags": network.flags,
                    "flags": sorted(config.flags),
                    "pools": dict(config.pools),
                    "profile": config.profiles[0].shapes,
                    "kept": sorted({layer.type for layer in kept}),
                    "kept_outputs": sorted({t for layer in kept for t in layer.output_types.values()}),
                }
            )
            # The "engine" names the graph it runs, kept in memory: engine files stay small.
            key = f"{name}-{len(models)}"
            models[key] = network.data
            return json.dumps({"graph": name, "model": key, "profile": config.profiles[0].shapes}).encode()

    class Context:
        def __init__(self, engine: Engine):
            self.engine, self.shapes, self.addresses, self.results = engine, {}, {}, None

        def set_input_shape(self, name: str, shape: tuple) -> bool:  # type: ignore[type-arg]
            low, _, high = self.engine.profile[name]
            if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
                return False
            self.shapes[name], self.results = tuple(shape), None
            return True

        def set_tensor_address(self, name: str, address: int) -> None:
            self.addresses[name] = address
            if name in self.engine.inputs:
                self.results = None

        def get_tensor_shape(self, name: str) -> tuple:  # type: ignore[type-arg]
            if name in self.engine.inputs:
                return self.shapes[name]
            if self.results is None:  # the stand-in infers shapes by running
                self.results = self.engine.compute(self._read_inputs())
            return self.results[name].shape

        def _read_inputs(self) -> dict[str, np.ndarray]:
            feeds = {}
            for name in self.engine.inputs:
                dtype = np.dtype(numpy_types[self.engine.dtypes[name]])
                shape = self.shapes[name]
                size = int(np.prod(shape)) * dtype.itemsize
                raw = (ctypes.c_char * size).from_address(self.addresses[name])
                feeds[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            return feeds

        def execute_async_v3(self, stream: int) -> bool:
            results = self.results if self.results is not None else self.engine.compute(self._read_inputs())
            for name, array in results.items():
                array = np.ascontiguousarray(array)
                ctypes.memmove(self.addresses[name], array.ctypes.data, array.nbytes)
            batch = self.shapes[self.engine.inputs[0]][0]
            record.setdefault("runs", []).append((self.engine.graph, batch, stream))
            self.results = None
            return True

    class Engine:
        def __init__(self, data: bytes):
            meta = json.loads(data)
            self.graph, self.profile, self.key = meta["graph"], meta["profile"], meta["model"]
            self.model = models[self.key]
            model = onnx.load_from_string(self.model)  # names and types; the session starts on first use
            self.inputs = [v.name for v in model.graph.input]
            self.outputs = [v.name for v in model.graph.output]
            elem = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.INT64: "INT64"}
            values = (*model.graph.input, *model.graph.output)
            self.dtypes = {v.name: elem[v.type.tensor_type.elem_type] for v in values}
            self.names = self.inputs + self.outputs

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name in self.inputs else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> str:
            return self.dtypes[name]

        def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
            assert index == 0
            return self.profile[name]

        def create_execution_context(self) -> Context:
            return Context(self)

        def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            if self.key not in sessions:  # one session per built engine, however often loaded
                options = ort.SessionOptions()
                options.intra_op_num_threads = 2
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sessions[self.key] = ort.InferenceSession(
                    self.model, options, providers=["CPUExecutionProvider"]
                )
            return dict(zip(self.outputs, sessions[self.key].run(None, feeds)))

    class Runtime:
        def __init__(self, logger: Logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            return Engine(bytes(data))

    for cls in (Logger, Builder, OnnxParser, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt


def install_stand_in(mp: pytest.MonkeyPatch, record: dict[str, Any]) -> None:
    """TensorRT and a GPU "present": the stand-in module, a fake device name, CPU buffers."""
    import sys

    import torch

    mp.setitem(sys.modules, "tensorrt", stand_in_tensorrt(record))
    mp.setattr(tensorrt_api, "_LOGGER", None)
    mp.setattr(tensorrt_api, "missing", lambda: [])
    mp.setattr(devices, "nvidia_gpu_present", lambda: True)
    mp.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    mp.setattr(torch.cuda, "get_device_name", lambda index=0: "Stand-in GPU")
    real = trt_runtime._cuda_device
    mp.setattr(trt_runtime, "_cuda_device", lambda device: real(device) and "cpu")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)


@pytest.fixture(scope="module")
def built(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """dwconvert --to trt (fp32, max batch 2, validated) on the stand-in, and the backend
    loaded from its directory: (conversion result, backend, what the stand-in recorded)."""
    record: dict[str, Any] = {}
    out = tmp_path_factory.mktemp("trt") / "tiny-fp32"
    with pytest.MonkeyPatch.context() as mp:
        install_stand_in(mp, record)
        result = convert(tiny_onnx, out, "trt", "fp32", max_batch=MAX_BATCH)
        backend = load(out, config=RuntimeConfig(device="cuda"))
    return result, backend, record


@pytest.fixture(scope="module")
def backends(tiny_onnx: Path, built):  # type: ignore[no-untyped-def]
    """onnxruntime itself, and the trt backend on engines built by the stand-in."""
    return OnnxBackend.from_model_dir(tiny_onnx, RUNTIME), built[1]


@pytest.fixture(scope="module")
def short_mel(speech_short) -> np.ndarray:  # type: ignore[no-untyped-def]
    return log_mel(load_audio(speech_short[0]), 80)[None]


@pytest.fixture(scope="module")
def encoded(backends, short_mel):  # type: ignore[no-untyped-def]
    """Two windows encoded once by onnxruntime and by the trt backend."""
    onnx, trt = backends
    mel = np.concatenate([short_mel, short_mel * 0.5])
    return onnx.encode(mel), trt.encode(mel)


@pytest.fixture(scope="module")
def dry_run_dir(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a dry run leaves for the runtime to read (tests/converters/test_trt.py checks that
    the converter writes exactly this): a trt manifest without engines."""
    out = tmp_path_factory.mktemp("trt") / "dry"
    out.mkdir()
    info = ModelInfo.from_model_dir(tiny_onnx)
    write_manifest(
        out, {"format": "trt", "precision": "fp16", "engines_built": False, "model_info": info.to_dict()}
    )
    return out


def _require_tensorrt() -> None:
    reasons = tensorrt_api.missing()
    if reasons:
        pytest.skip(f"needs TensorRT and an NVIDIA GPU: {'; '.join(reasons)}")


# -- availability and directories ---------------------------------------------------------------


def test_unavailable_reason_names_what_is_missing() -> None:
    reasons = tensorrt_api.missing()
    if not reasons:
        assert TrtBackend.unavailable_reason() is None
        return
    reason = TrtBackend.unavailable_reason()
    assert reason == "; ".join(reasons)
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert reason.startswith("tensorrt not installed (pip install 'dwkit[gpu]' on an NVIDIA machine)")
    assert spec("trt").backend_class is TrtBackend


def test_a_dry_run_directory_says_it_has_no_engines(dry_run_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"built with --dry-run: no engines; rebuild on a GPU machine"):
        TrtBackend.from_model_dir(dry_run_dir, RuntimeConfig(device="cuda"))
    if tensorrt_api.missing():
        with pytest.raises(
            BackendUnavailable, match="backend trt: the trt backend runs on an NVIDIA GPU only"
        ):
            load(dry_run_dir)


def test_directory_and_option_errors_name_the_fix(
    dry_run_dir: Path, tmp_path: Path, tiny_en_dir: Path
) -> None:
    built = tmp_path / "built"
    built.mkdir()
    manifest = dict(read_manifest(dry_run_dir))
    write_manifest(built, {**manifest, "engines_built": True})
    with pytest.raises(
        ConfigError, match="holds fp16 engines; a trt directory runs at the precision it was built"
    ):
        TrtBackend.from_model_dir(built, RuntimeConfig(device="cuda", precision="fp32"))
    with pytest.raises(ConfigError, match="TensorRT runs on an NVIDIA GPU only"):
        TrtBackend.from_model_dir(built, RuntimeConfig(device="cpu"))
    with pytest.raises(ConfigError, match="max_batch apply when building engines for an onnx directory"):
        TrtBackend.from_model_dir(built, RuntimeConfig(device="cuda", options={"max_batch": 4}))
    with pytest.raises(ConfigError, match="trt backend options provider unknown"):
        TrtBackend.from_model_dir(built, RuntimeConfig(device="cuda", options={"provider": "cuda"}))
    with pytest.raises(ModelError, match="not a trt \\(or onnx\\) model directory"):
        TrtBackend.from_model_dir(tiny_en_dir, RuntimeConfig(device="cuda"))
    with pytest.raises(ConfigError, match="trt precision 'int8'"):
        TrtBackend.from_model_dir(_onnx_like(tmp_path), RuntimeConfig(device="cuda", precision="int8"))


def _onnx_like(tmp_path: Path) -> Path:
    path = tmp_path / "onnx"
    path.mkdir()
    write_manifest(path, {"format": "onnx", "precision": "fp32", "model_info": {}})
    return path


def test_engines_with_other_tensor_names_are_refused(built) -> None:  # type: ignore[no-untyped-def]
    _, trt, _ = built
    engines = {**trt.engines, "decoder_step": trt.engines["decoder_init"]}
    with pytest.raises(ModelError, match="decoder_step engine: tensors .* are not dwkit's"):
        TrtBackend(engines, trt.info, "fp32", "cpu")


# -- conversion and loading through tensorrt_api (stand-in TensorRT) ----------------------------


def test_conversion_builds_records_and_validates_engines(built, tiny_onnx: Path) -> None:  # type: ignore[no-untyped-def]
    result, trt, record = built
    manifest = read_manifest(result.out_dir)
    assert manifest["engines_built"] is True and result.manifest["engines_built"] is True
    assert {f"{g}.engine" for g in GRAPHS} <= set(result.files)
    assert manifest["build"]["tensorrt"] == "10.3.0" and manifest["build"]["compute_capability"] == "9.0"
    assert list(manifest["build"]["engines"]) == list(GRAPHS)
    validation = manifest["validation"]
    assert validation["passed"] and validation["gated"] and validation["tokens_equal"]
    assert validation["reference"].startswith("onnxruntime fp32")
    builds = record["builds"][:3]
    plan = manifest["plan"]
    for graph, build in zip(GRAPHS, builds):
        assert build["graph"] == graph and build["network_flags"] == 0
        assert build["flags"] == []  # fp32: TF32 (on by default) cleared, nothing set
        assert build["pools"] == {"WORKSPACE": 4096 << 20}
        assert build["kept"] == []
        expected = plan["engines"][graph]["profile"]
        assert build["profile"] == {n: [p["min"], p["opt"], p["max"]] for n, p in expected.items()}
    assert isinstance(trt, TrtBackend) and trt.precision == "fp32" and trt.max_batch == {g: 2 for g in GRAPHS}


def test_onnx_directories_build_their_engines_once_into_the_cache(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record: dict[str, Any] = {}
    install_stand_in(monkeypatch, record)
    config = RuntimeConfig(device="cuda", options={"engine_cache": str(tmp_path), "max_batch": 4})
    trt = TrtBackend.from_model_dir(tiny_onnx, config)  # the default precision: fp16
    assert trt.precision == "fp16" and trt.max_batch == {g: 4 for g in GRAPHS}
    assert [b["graph"] for b in record["builds"]] == list(GRAPHS)
    for build in record["builds"]:
        assert build["flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS", "TF32"]
        assert build["kept"] == ["NORMALIZATION", "SOFTMAX"] and build["kept_outputs"] == ["FLOAT"]
    (cached,) = tmp_path.glob(f"{tiny_onnx.name}-fp16-b4-*")
    assert {p.name for p in cached.iterdir()} == {
        *(f"{g}.engine" for g in GRAPHS),
        "trt_plan.json",
        "trt_build.json",
    }
    TrtBackend.from_model_dir(tiny_onnx, config)
    assert len(record["builds"]) == 3  # the second load built nothing
    TrtBackend.from_model_dir(
        tiny_onnx, RuntimeConfig(device="cuda", precision="bf16", options=config.options)
    )
    assert record["builds"][-1]["flags"] == ["BF16", "PREFER_PRECISION_CONSTRAINTS", "TF32"]


def test_engines_from_another_tensorrt_or_gpu_are_refused(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    result, _, _ = built
    copy = tmp_path / "copy"
    copy.mkdir()
    manifest = read_manifest(result.out_dir)
    write_manifest(copy, {**manifest, "build": {**manifest["build"], "tensorrt": "10.0.1"}})
    install_stand_in(monkeypatch, {})
    with pytest.raises(ModelError, match="engines were built for TensorRT 10.0.1, this machine has 10.3.0"):
        TrtBackend.from_model_dir(copy, RuntimeConfig(device="cuda"))
    write_manifest(copy, {**manifest, "build": {**manifest["build"], "compute_capability": "8.6"}})
    with pytest.raises(ModelError, match="GPU compute capability 8.6, this machine has 9.0"):
        TrtBackend.from_model_dir(copy, RuntimeConfig(device="cuda"))


def test_tensorrt_11_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, {})
    import sys

    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "11.0.0")
    with pytest.raises(BackendUnavailable, match="TensorRT 11.0.0: dwkit builds engines with TensorRT 10.x"):
        tensorrt_api.trt_module()


def test_shapes_outside_the_profile_fail_clearly(built) -> None:  # type: ignore[no-untyped-def]
    import torch

    _, trt, _ = built
    engine = trt.engines["encoder"]
    with pytest.raises(
        ModelError, match=r"encoder.engine: input input_features of shape \(3, 80, 3000\) is outside"
    ):
        engine.run({"input_features": torch.zeros(3, 80, 3000)})


# -- the backend against onnxruntime on the same graphs ------------------------------------------


def test_encoder_logits_and_greedy_tokens_equal_onnxruntime(backends, short_mel) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends
    report = compare_backends(onnx, trt, short_mel)
    assert report.encoder_max_abs < 1e-5 and report.logits_max_abs < 1e-4
    assert report.tokens_equal and len(report.reference_tokens) > 5


def test_batches_above_the_profile_run_in_chunks(backends, built, short_mel) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends
    record = built[2]
    noise = np.random.default_rng(0).standard_normal(short_mel.shape).astype(np.float32) * 0.1
    mel = np.concatenate([short_mel, short_mel + noise, short_mel[:, :, ::-1].copy()])
    info = onnx.info
    prompts = [[info.sot, info.no_timestamps]] * 3
    opts = DecodeOptions(without_timestamps=True, max_new_tokens=8)
    record["runs"] = []
    chunked = trt.generate(trt.encode(mel), prompts, opts)
    reference = onnx.generate(onnx.encode(mel), prompts, opts)
    assert [h.tokens for h in chunked] == [h.tokens for h in reference]
    assert len({tuple(h.tokens) for h in chunked}) > 1  # three different rows, kept apart
    assert np.allclose([h.sum_logprob for h in chunked], [h.sum_logprob for h in reference], atol=1e-3)
    runs = record["runs"]
    assert [batch for graph, batch, _ in runs if graph == "encoder"] == [2, 1]
    assert [batch for graph, batch, _ in runs if graph == "decoder_init"] == [2, 1]
    assert max(batch for _, batch, _ in runs) == MAX_BATCH
    assert {stream for _, _, stream in runs} == {0}  # CPU buffers: no CUDA stream


def test_beam_search_and_reordering_equal_onnxruntime(backends, encoded) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends  # 2 audios x 3 beams = 6 rows: chunked and reordered across chunks
    theirs_enc, ours_enc = encoded
    info = onnx.info
    prompts = [[info.sot, info.no_timestamps]] * 2
    opts = DecodeOptions(beam_size=3, without_timestamps=True, max_new_tokens=10)
    ours = trt.generate(ours_enc, prompts, opts)
    theirs = onnx.generate(theirs_enc, prompts, opts)
    assert [h.tokens for h in ours] == [h.tokens for h in theirs]
    assert np.allclose([h.sum_logprob for h in ours], [h.sum_logprob for h in theirs], atol=1e-3)


def test_reorder_moves_self_and_cross_attention_rows(backends, encoded) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends
    theirs_enc, ours_enc = encoded
    info = onnx.info
    rows = np.array([0, 0, 1, 1])
    prompts = np.array([[info.sot, info.no_timestamps, t] for t in (440, 383, 13, 11)])
    ours, theirs = trt.start(ours_enc, rows), onnx.start(theirs_enc, rows)
    trt.step(prompts, ours), onnx.step(prompts, theirs)
    for index in ([1, 0, 3, 3], [2, 0, 1, 3]):  # within each audio, then across audios
        trt.reorder(ours, np.array(index)), onnx.reorder(theirs, np.array(index))
        nxt = np.array([[262], [262], [262], [262]])
        a, b = trt.step(nxt, ours), onnx.step(nxt, theirs)
        assert np.abs(a - b).max() < 1e-4
        assert not np.allclose(a[0], a[1], atol=1e-3)  # the rows really differ: a swap shows
    assert list(ours.rows) == list(theirs.rows) == [1, 0, 0, 1]


def test_selected_rows_and_prompts_longer_than_one_step(backends, encoded) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends
    theirs_enc, ours_enc = encoded
    info = onnx.info
    enc, ref = trt.select(ours_enc, [1]), onnx.select(theirs_enc, [1])
    assert enc.batch_size == 1
    assert np.abs(trt.encoder_array(enc) - onnx.encoder_array(ref)).max() < 1e-5
    prompt = np.array([[info.sot, info.no_timestamps]])
    cache, ref_cache = trt.start(enc, np.array([0])), onnx.start(ref, np.array([0]))
    trt.step(prompt, cache), onnx.step(prompt, ref_cache)
    more = np.array([[440, 383, 13]])  # three tokens after the prefix
    assert np.abs(trt.step(more, cache) - onnx.step(more, ref_cache)).max() < 1e-4


def test_transcript_equals_onnxruntime(backends, tiny_onnx: Path, speech_short) -> None:  # type: ignore[no-untyped-def]
    onnx, trt = backends
    audio = load_audio(speech_short[0])
    ours = Transcriber(trt, Tokenizer.from_model_dir(tiny_onnx, trt.info)).transcribe(audio)
    theirs = Transcriber(onnx, Tokenizer.from_model_dir(tiny_onnx, onnx.info)).transcribe(audio)
    assert ours.text == theirs.text and ours.text.strip()


# -- real engines (NVIDIA GPU + TensorRT) ---------------------------------------------------------


@pytest.mark.gpu
def test_trt_transcribes_speech_short_like_transformers(
    tiny_en_dir: Path, tiny_onnx: Path, speech_short, simple_wer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _require_tensorrt()
    audio = load_audio(speech_short[0])
    built = convert(tiny_onnx, tmp_path / "tiny-trt", "trt", "fp16", validate=False).out_dir
    hf = Transcriber.from_model_dir(tiny_en_dir, "hf", RUNTIME).transcribe(audio)
    trt = Transcriber.from_model_dir(built, runtime=RuntimeConfig(device="cuda")).transcribe(audio)
    from_onnx_dir = Transcriber.from_model_dir(
        tiny_onnx, "trt", RuntimeConfig(device="cuda", options={"engine_cache": str(tmp_path / "engines")})
    ).transcribe(audio)
    print(f"\nhf: {hf.text}\ntrt fp16: {trt.text}")
    assert simple_wer(hf.text, trt.text) <= FP16_WER_MAX
    assert simple_wer(hf.text, from_onnx_dir.text) <= FP16_WER_MAX  # engines built at load time
