"""transformers -> ONNX: three plain graphs (no If node, dynamic batch and lengths), a complete
directory or nothing, a truthful manifest, and validation against transformers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit.converters import convert  # noqa: E402
from dwkit.converters import onnx as onnx_converter  # noqa: E402
from dwkit.errors import ConversionError, ValidationError  # noqa: E402
from dwkit.manifest import read_manifest, weights_checksum  # noqa: E402
from dwkit.model_info import ModelInfo  # noqa: E402
from dwkit.onnx_graphs import GRAPHS, graph_file, graph_io  # noqa: E402

EXPECTED_FILES = {
    "encoder.onnx",
    "decoder_init.onnx",
    "decoder_step.onnx",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "generation_config.json",
    "config.json",
    "dwkit.json",
}
LOGITS_ATOL = 1e-3
CODE = (
    "dwkit.converters.onnx",
    "dwkit.converters.onnx_export",
    "dwkit.converters.template",
    "dwkit.onnx_graphs",
    "dwkit.onnx_check",
)


def converted(
    source: Path, precision: str, cache: Path, validate: bool = False, word_timestamps: bool = False
) -> Path:
    """`source` converted to onnx `precision`, cached across runs while the converter and inputs
    are unchanged. fp16/int8 (and word-timestamp exports, which add only the alignment graph)
    start from the cached fp32 export. Shared with tests/runtimes/test_onnx_backend.py so each
    model is exported once per cache."""
    from importlib.metadata import version

    from dwkit.bundled import cache_lock, code_digest

    key = hashlib.sha256()
    key.update(code_digest(*CODE).encode())
    for package in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript"):
        key.update(f"{package}={version(package)}".encode())
    for path in sorted(source.glob("*.safetensors")):
        stat = path.stat()
        key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(str(validate).encode())
    kind = f"{precision}-words" if word_timestamps else precision
    out = cache / "onnx" / f"{source.name}-{kind}-{key.hexdigest()[:12]}"
    opts: dict[str, object] = {"word_timestamps": True} if word_timestamps else {}
    if precision != "fp32" or word_timestamps:
        opts["fp32_export"] = converted(source, "fp32", cache, validate=True)
    with cache_lock(out.parent / f".{out.name}.lock"):
        for stale in out.parent.glob(f"{source.name}-{kind}-[0-9a-f]*"):
            if stale != out and stale.is_dir():  # an older converter's output: ~250 MB each
                shutil.rmtree(stale, ignore_errors=True)
        if not (out / "dwkit.json").is_file():
            convert(
                source,
                out,
                "onnx",
                precision,
                validate=validate,
                overwrite=True,
                threads=2,
                progress=False,
                **opts,
            )
    return out


@pytest.fixture(scope="module")
def tiny_fp32(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)


def _op_types(model) -> set[str]:  # type: ignore[no-untyped-def]
    found = set()

    def visit(nodes) -> None:  # type: ignore[no-untyped-def]
        for node in nodes:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.g.node:
                    visit(attr.g.node)
                for sub in attr.graphs:
                    visit(sub.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return found


def test_conversion_writes_a_complete_directory_and_a_truthful_manifest(
    tiny_fp32: Path, tiny_en_dir: Path
) -> None:
    assert {p.name for p in tiny_fp32.iterdir()} == EXPECTED_FILES
    assert not list(tiny_fp32.parent.glob(f".{tiny_fp32.name}.partial-*"))
    manifest = read_manifest(tiny_fp32)
    assert manifest["format"] == "onnx" and manifest["precision"] == "fp32"
    assert manifest["source"]["weights_checksum"] == weights_checksum(tiny_en_dir)
    assert manifest["weights_checksum"] == weights_checksum(tiny_fp32)
    assert manifest["opset"] >= 17
    assert {"torch", "transformers", "onnx", "onnxruntime", "opset"} <= set(manifest["library_versions"])
    assert manifest["model_info"] == ModelInfo.from_hf_dir(tiny_en_dir).to_dict()
    assert [g["name"] for g in manifest["graphs"]] == list(GRAPHS)
    step = manifest["graphs"][2]
    assert step["dynamic_axes"]["past_key.0"] == {"0": "batch", "2": "past"}
    assert step["dynamic_axes"]["cross_key.0"] == {"0": "batch"}
    assert manifest["graphs"][1]["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "prompt"}
    validation = manifest["validation"]
    assert validation["passed"] and validation["gated"]
    assert validation["logits_max_abs"] < LOGITS_ATOL and validation["tokens_equal"]
    print(
        f"\nfp32 validation: logits max abs {validation['logits_max_abs']:.2e}, "
        f"{len(validation['reference_tokens'])} greedy tokens identical"
    )


def test_graphs_pass_the_checker_and_hold_no_if_node(tiny_fp32: Path) -> None:
    import onnx

    layers = ModelInfo.from_model_dir(tiny_fp32).decoder_layers
    for graph in GRAPHS:
        path = tiny_fp32 / graph_file(graph)
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
        assert "If" not in _op_types(model), graph
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        names = graph_io(graph, layers)
        assert tuple(i.name for i in model.graph.input) == names.inputs
        assert tuple(o.name for o in model.graph.output) == names.outputs


def test_graphs_run_at_batch_two_and_prompt_lengths_one_and_three(tiny_fp32: Path, tiny_en_dir: Path) -> None:
    import onnxruntime as ort
    import torch
    from transformers import WhisperForConditionalGeneration

    info = ModelInfo.from_model_dir(tiny_fp32)
    sessions = {
        g: ort.InferenceSession(str(tiny_fp32 / graph_file(g)), providers=["CPUExecutionProvider"])
        for g in GRAPHS
    }
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    mel = np.random.default_rng(0).standard_normal((2, info.n_mels, 3000)).astype(np.float32) * 0.2
    (states,) = sessions["encoder"].run(None, {"input_features": mel})
    assert states.shape == (2, info.n_audio_ctx, info.d_model)
    layers = info.decoder_layers
    for prompt in ([info.sot], [info.sot, info.no_timestamps, 440]):
        ids = np.array([prompt, prompt[:-1] + [50]], dtype=np.int64)
        logits, *cache = sessions["decoder_init"].run(
            None, {"input_ids": ids, "encoder_hidden_states": states}
        )
        assert logits.shape == (2, len(prompt), info.vocab_size)
        assert cache[0].shape[2] == len(prompt)  # present_key.0: [batch, heads, prompt, head_dim]
        with torch.no_grad():
            ref = model(
                encoder_outputs=(torch.from_numpy(states),), decoder_input_ids=torch.from_numpy(ids)
            ).logits
        assert np.abs(logits - ref.numpy()).max() < LOGITS_ATOL
        past, cross = cache[: 2 * layers], cache[2 * layers :]
        feed = {"input_ids": logits[:, -1].argmax(-1)[:, None].astype(np.int64)}
        feed.update(zip(graph_io("decoder_step", layers).inputs[1:], [*past, *cross]))
        step_logits, *present = sessions["decoder_step"].run(None, feed)
        assert step_logits.shape == (2, 1, info.vocab_size)
        assert present[0].shape[2] == len(prompt) + 1
        full = np.concatenate([ids, feed["input_ids"]], axis=1)
        with torch.no_grad():
            ref = model(
                encoder_outputs=(torch.from_numpy(states),), decoder_input_ids=torch.from_numpy(full)
            ).logits
        assert np.abs(step_logits[:, 0] - ref[:, -1].numpy()).max() < LOGITS_ATOL


def test_failed_validation_leaves_nothing(
    tmp_path: Path, tiny_en_dir: Path, tiny_fp32: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        return {"passed": False, "failures": ["greedy tokens differ from index 3"]}

    monkeypatch.setattr(onnx_converter, "validate_model", failing)
    out = tmp_path / "model"
    with pytest.raises(ValidationError, match="nothing was written"):
        convert(tiny_en_dir, out, "onnx", "fp32", fp32_export=tiny_fp32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_conversion_leaves_nothing(
    tmp_path: Path, tiny_en_dir: Path, tiny_fp32: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    real = onnx_converter._convert_precision
    calls = []

    def interrupt_second_graph(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) == 2:  # the first int8 graph is already written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_converter, "_convert_precision", interrupt_second_graph)
    with pytest.raises(KeyboardInterrupt):
        convert(tiny_en_dir, tmp_path / "model", "onnx", "int8", fp32_export=tiny_fp32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(tmp_path: Path, tiny_en_dir: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="already exists"):
        convert(tiny_en_dir, out, "onnx", "fp32", progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_requests_fail_before_any_work(tmp_path: Path, tiny_en_dir: Path) -> None:
    with pytest.raises(ConversionError, match="choose one of fp32, fp16, int8"):
        convert(tiny_en_dir, tmp_path / "a", "onnx", "q4_0")
    with pytest.raises(ConversionError, match="does not take"):
        convert(tiny_en_dir, tmp_path / "b", "onnx", "fp32", quantize_embeddings=True)
    with pytest.raises(ConversionError, match="opset 16"):
        convert(tiny_en_dir, tmp_path / "c", "onnx", "fp32", opset=16)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "dwkit.json").write_text(
        json.dumps(
            {"format": "onnx", "precision": "fp32", "opset": 18, "source": {"weights_checksum": "other"}}
        )
    )
    with pytest.raises(ConversionError, match="other weights"):
        convert(tiny_en_dir, tmp_path / "d", "onnx", "int8", fp32_export=foreign)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]


def test_int8_quantizes_every_matmul_weight_including_the_output_projection(
    tiny_en_dir: Path, dwkit_cache: Path
) -> None:
    import onnx

    int8 = converted(tiny_en_dir, "int8", dwkit_cache)
    manifest = read_manifest(int8)
    assert manifest["precision"] == "int8" and manifest["fp32_export"]
    model = onnx.load(str(int8 / "decoder_step.onnx"))
    ops = _op_types(model)
    assert "MatMulInteger" in ops and "If" not in ops
    inits = {t.name for t in model.graph.initializer}
    float_weight_matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert float_weight_matmuls == []
    assert [i.type.tensor_type.elem_type for i in model.graph.input][1] == onnx.TensorProto.FLOAT


def test_fp16_keeps_float32_inputs_and_can_write_external_data(
    tmp_path: Path, tiny_en_dir: Path, tiny_fp32: Path
) -> None:
    import onnx

    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.onnx import OnnxBackend

    out = tmp_path / "fp16"
    result = convert(
        tiny_en_dir,
        out,
        "onnx",
        "fp16",
        fp32_export=tiny_fp32,
        external_data=True,
        validate=False,
        progress=False,
    )
    assert {f"{g}.onnx_data" for g in GRAPHS} <= set(result.files)
    assert all(g["external_data"] == f"{g['name']}.onnx_data" for g in result.manifest["graphs"])
    assert (out / "encoder.onnx").stat().st_size < 1_000_000  # the weights are in the data file
    model = onnx.load(str(out / "decoder_step.onnx"), load_external_data=False)
    assert {i.type.tensor_type.elem_type for i in model.graph.input[1:]} == {onnx.TensorProto.FLOAT}
    layer_norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert layer_norms  # kept in float32: their inputs come through a Cast to float
    backend = OnnxBackend.from_model_dir(out, RuntimeConfig(threads=2))
    mel = np.zeros((1, backend.info.n_mels, 3000), dtype=np.float32)
    assert backend.encoder_array(backend.encode(mel)).dtype == np.float32


@pytest.mark.slow
def test_distil_shaped_128_mel_model_exports_and_matches_transformers(
    random_distil128_dir: Path, tmp_path: Path
) -> None:
    # external_data: the layout the 2.5 GB distil-large-v3.5 encoder gets, here forced on a small model
    result = convert(
        random_distil128_dir,
        tmp_path / "distil",
        "onnx",
        "fp32",
        external_data=True,
        threads=2,
        progress=False,
    )
    assert {f"{g}.onnx_data" for g in GRAPHS} <= set(result.files)
    validation = result.validation
    assert validation["passed"]
    assert validation["encoder_max_abs"] < 1e-3 and validation["logits_max_abs"] < LOGITS_ATOL
    assert result.manifest["graphs"][0]["inputs"][0]["shape"] == ["batch", 128, 3000]
    assert result.manifest["model_info"]["decoder_layers"] == 2
    print(
        f"\ndistil-128: encoder {validation['encoder_max_abs']:.2e}, logits {validation['logits_max_abs']:.2e}"
    )


@pytest.mark.slow
def test_graphs_agree_with_optimums_export(
    tiny_fp32: Path, tiny_en_dir: Path, tmp_path: Path, speech_short
) -> None:  # type: ignore[no-untyped-def]
    """An independent exporter as a reference: optimum-onnx's encoder / decoder / decoder-with-past."""
    import time

    exporters = pytest.importorskip("optimum.exporters.onnx")
    import onnxruntime as ort

    from dwkit.audio import load_audio
    from dwkit.features import log_mel
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.onnx import OnnxBackend

    theirs_dir = tmp_path / "optimum"
    exporters.main_export(
        str(tiny_en_dir),
        output=theirs_dir,
        task="automatic-speech-recognition-with-past",
        no_post_process=True,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    theirs = {
        name: ort.InferenceSession(
            str(theirs_dir / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        for name in ("encoder_model", "decoder_model", "decoder_with_past_model")
    }
    ours = OnnxBackend.from_model_dir(tiny_fp32, RuntimeConfig(threads=2))
    info = ours.info
    mel = log_mel(load_audio(speech_short[0]), info.n_mels)[None]
    enc = ours.encode(mel)
    (their_states,) = theirs["encoder_model"].run(None, {"input_features": mel})
    assert np.abs(ours.encoder_array(enc) - their_states).max() < 1e-4

    prompt = np.array([[info.sot, info.no_timestamps]])
    cache = ours.start(enc, np.array([0]))
    our_logits = ours.step(prompt, cache)
    their_logits, *present = theirs["decoder_model"].run(
        None, {"input_ids": prompt, "encoder_hidden_states": their_states}
    )
    past_names = [i.name for i in theirs["decoder_with_past_model"].get_inputs()[1:]]
    cross = {n: v for n, v in zip(past_names, present) if ".encoder." in n}
    self_kv = {n: v for n, v in zip(past_names, present) if ".decoder." in n}
    ours_s = theirs_s = 0.0
    for _ in range(20):
        assert np.abs(our_logits[:, -1] - their_logits[:, -1]).max() < 1e-4
        token = our_logits[:, -1].argmax(-1)[:, None].astype(np.int64)
        assert token[0, 0] == their_logits[:, -1].argmax()
        if token[0, 0] == info.eot:
            break
        started = time.perf_counter()
        our_logits = ours.step(token, cache)
        ours_s += time.perf_counter() - started
        started = time.perf_counter()
        their_logits, *new = theirs["decoder_with_past_model"].run(
            None, {"input_ids": token, **self_kv, **cross}
        )
        theirs_s += time.perf_counter() - started
        self_kv = dict(zip([n for n in past_names if ".decoder." in n], new))
    print(
        f"\ndecoder step, 2 threads: ours {ours_s * 1000:.0f} ms, optimum's {theirs_s * 1000:.0f} ms for the same tokens"
    )
