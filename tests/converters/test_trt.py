"""ONNX export -> TensorRT: graph checks (checker, no control flow, supported ops, profile
coverage), the build plan, dry runs, and a clear refusal where TensorRT or a GPU is missing.
Building engines needs both; those tests are marked gpu and skip with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit import onnx_check, onnx_graphs, trt_build  # noqa: E402
from dwkit.cli.dwconvert import entry  # noqa: E402
from dwkit.converters import convert  # noqa: E402
from dwkit.errors import BackendUnavailable, ConversionError  # noqa: E402
from dwkit.manifest import read_manifest, weights_checksum, write_manifest  # noqa: E402
from dwkit.model_info import ModelInfo  # noqa: E402
from dwkit.onnx_graphs import GRAPHS, graph_file, graph_io  # noqa: E402
from dwkit.runtimes import tensorrt_api  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402

GRAPH_FILES = {graph_file(g) for g in GRAPHS}
SIDE_FILES = {"tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json"}


@pytest.fixture(scope="module")
def tiny_onnx(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    """tiny.en's fp32 onnx export, shared with the onnx tests (exported once per cache)."""
    return converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)


@pytest.fixture(scope="module")
def tiny_plan(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dry run from the onnx directory: graphs checked, plan written, nothing built."""
    out = tmp_path_factory.mktemp("trt") / "tiny-fp16"
    convert(tiny_onnx, out, "trt", "fp16", dry_run=True)
    return out


def _missing_or_skip() -> list[str]:
    reasons = tensorrt_api.missing()
    if not reasons:
        pytest.skip("TensorRT and an NVIDIA GPU are present here: the refusal path cannot be observed")
    return reasons


def _require_tensorrt() -> None:
    reasons = tensorrt_api.missing()
    if reasons:
        pytest.skip(f"needs TensorRT and an NVIDIA GPU: {'; '.join(reasons)}")


# -- dry run: graphs, plan, manifest -----------------------------------------------------------


def test_dry_run_writes_graphs_plan_and_a_manifest_without_engines(tiny_plan: Path, tiny_onnx: Path) -> None:
    names = {p.name for p in tiny_plan.iterdir()}
    assert GRAPH_FILES | SIDE_FILES | {"config.json", "dwkit.json", "trt_plan.json"} == names
    assert not list(tiny_plan.glob("*.engine"))
    assert not list(tiny_plan.parent.glob(".*partial*"))
    manifest = read_manifest(tiny_plan)
    assert manifest["format"] == "trt" and manifest["precision"] == "fp16"
    assert manifest["engines_built"] is False and manifest["build"] is None and manifest["validation"] is None
    plan = json.loads((tiny_plan / "trt_plan.json").read_text())
    assert manifest["plan"] == plan
    onnx_manifest = read_manifest(tiny_onnx)
    assert manifest["source"] == onnx_manifest["source"]  # the transformers checkpoint, not the onnx copy
    assert manifest["onnx_validation"]["passed"]
    assert manifest["model_info"] == onnx_manifest["model_info"]
    assert manifest["weights_checksum"] == weights_checksum(tiny_plan)
    for graph in GRAPHS:  # the graphs are the onnx export's, byte for byte
        assert (tiny_plan / graph_file(graph)).read_bytes() == (tiny_onnx / graph_file(graph)).read_bytes()


def test_checkpoint_source_runs_the_onnx_export_and_keeps_no_staging(
    tiny_en_dir: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    # onnx_export hands the export step an existing fp32 export (the onnx converter's own
    # fp32_export), so this goes through the checkpoint path without exporting again.
    result = convert(
        tiny_en_dir,
        tmp_path / "trt",
        "trt",
        "fp32",
        dry_run=True,
        validate=False,
        onnx_export=tiny_onnx,
        progress=False,
    )
    names = {p.name for p in result.out_dir.iterdir()}
    assert GRAPH_FILES <= names and "trt_plan.json" in names and ".onnx-export" not in names
    assert result.manifest["source"]["weights_checksum"] == weights_checksum(tiny_en_dir)
    assert result.manifest["plan"]["builder"]["cleared_flags"] == ["TF32"]
    assert list(tmp_path.iterdir()) == [tmp_path / "trt"]


def test_graph_checks_pass_on_the_real_export(tiny_plan: Path) -> None:
    manifest = read_manifest(tiny_plan)
    info = ModelInfo.from_dict(manifest["model_info"])
    for graph, entry_ in zip(GRAPHS, manifest["graphs"]):
        assert entry_["file"] == graph_file(graph)
        assert entry_["control_flow"] == [] and entry_["unsupported_ops"] == []
        assert set(entry_["op_types"]) <= trt_build.SUPPORTED_OPS
        assert not set(entry_["op_types"]) & {"If", "Loop", "Scan"}
        assert trt_build.PARSER_OPSETS[0] <= entry_["opset"] <= trt_build.PARSER_OPSETS[1]
        assert [v["name"] for v in entry_["inputs"]] == list(graph_io(graph, info.decoder_layers).inputs)
    encoder, init, step = manifest["graphs"]
    assert encoder["inputs"][0]["shape"] == ["batch", 80, 3000]
    assert init["inputs"][0]["shape"] == ["batch", "prompt"]
    assert step["inputs"][1]["shape"] == ["batch", info.decoder_heads, "past", 64]
    assert step["inputs"][-1]["shape"] == ["batch", info.decoder_heads, 1500, 64]


def test_onnx_and_trt_checks_share_one_graph_reader(tiny_onnx: Path, tiny_plan: Path) -> None:
    onnx_graphs_ = read_manifest(tiny_onnx)["graphs"]
    trt_graphs = read_manifest(tiny_plan)["graphs"]
    for exported, checked in zip(onnx_graphs_, trt_graphs):
        assert exported["op_types"] == checked["op_types"] and exported["opset"] == checked["opset"]
        assert exported["inputs"] == checked["inputs"] and exported["outputs"] == checked["outputs"]


# -- refusals: control flow, unsupported ops, uncovered dimensions ------------------------------


def _tiny_graph(path: Path, nodes, inputs, outputs, initializers=(), opset: int = 18, domains=()) -> Path:  # type: ignore[no-untyped-def]
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save_model(model, str(path))
    return path


def _encoder_profile(n_mels: int = 80, max_batch: int = 8) -> dict:  # type: ignore[type-arg]
    return {
        "input_features": {
            "min": [1, n_mels, 3000],
            "opt": [max_batch, n_mels, 3000],
            "max": [max_batch, n_mels, 3000],
        }
    }


def test_an_injected_if_node_is_refused_naming_it_and_the_graph(tiny_plan: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(tiny_plan / "encoder.onnx"))
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=one)],
        "branch",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
    )
    model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    model.graph.node.append(
        helper.make_node("If", ["flag"], ["chosen"], then_branch=branch, else_branch=branch)
    )
    model.graph.output.append(helper.make_tensor_value_info("chosen", TensorProto.FLOAT, [1]))
    path = tmp_path / "encoder.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ConversionError, match=r"encoder\.onnx: has If node\(s\)"):
        trt_build.check_graph(path, _encoder_profile())


def test_control_flow_inside_a_local_function_is_found(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "body",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    function = helper.make_function(
        "dwkit.test",
        "Wrapped",
        ["c", "x"],
        ["y"],
        [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
        [helper.make_opsetid("", 18)],
    )
    graph = helper.make_graph(
        [helper.make_node("Wrapped", ["c", "x"], ["y"], domain="dwkit.test")],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph,
        functions=[function],
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("dwkit.test", 1)],
    )
    assert onnx_check.op_types(model) == {"If": 1, "Identity": 2}


def test_an_unsupported_op_is_refused_naming_the_op_and_the_graph(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    # The int8 onnx export's pattern: DynamicQuantizeLinear feeding MatMulInteger.
    weight = numpy_helper.from_array(np.ones((3000, 4), dtype=np.int8), "w")
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["input_features"], ["q", "scale", "zero"]),
        helper.make_node("MatMulInteger", ["q", "w", "zero"], ["y"]),
    ]
    path = _tiny_graph(
        tmp_path / "decoder_init.onnx",
        nodes,
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["batch", 80, 3000])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 80, 4])],
        [weight],
    )
    with pytest.raises(
        ConversionError,
        match=r"decoder_init\.onnx: TensorRT's ONNX parser does not support DynamicQuantizeLinear, MatMulInteger",
    ):
        trt_build.check_graph(path, _encoder_profile())
    custom = _tiny_graph(
        tmp_path / "encoder.onnx",
        [
            helper.make_node(
                "FusedMatMul", ["input_features", "input_features"], ["y"], domain="com.microsoft"
            )
        ],
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["batch", 80, 3000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 80, 80])],
        domains=["com.microsoft"],
    )
    with pytest.raises(
        ConversionError, match=r"encoder\.onnx: .*does not support com\.microsoft::FusedMatMul"
    ):
        trt_build.check_graph(custom, _encoder_profile())


def test_an_opset_outside_the_parsers_range_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    path = _tiny_graph(
        tmp_path / "encoder.onnx",
        [helper.make_node("Relu", ["input_features"], ["y"])],
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["batch", 80, 3000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 80, 3000])],
        opset=8,
    )
    with pytest.raises(
        ConversionError, match=r"encoder\.onnx: opset 8 is outside TensorRT 10's ONNX parser range 9\.\.20"
    ):
        trt_build.check_graph(path, _encoder_profile())


def test_profiles_cover_every_dynamic_dimension_and_fix_the_frames(tiny_plan: Path) -> None:
    manifest = read_manifest(tiny_plan)
    info = ModelInfo.from_dict(manifest["model_info"])
    profiles = onnx_graphs.profiles(info, 8)
    step = profiles["decoder_step"]
    assert step["input_ids"] == {"min": [1, 1], "opt": [8, 1], "max": [8, 1]}
    assert step["past_key.0"] == {"min": [1, 6, 1, 64], "opt": [8, 6, 224, 64], "max": [8, 6, 447, 64]}
    assert step["cross_value.3"] == {
        "min": [1, 6, 1500, 64],
        "opt": [8, 6, 1500, 64],
        "max": [8, 6, 1500, 64],
    }
    init = profiles["decoder_init"]
    assert init["input_ids"] == {"min": [1, 1], "opt": [8, 4], "max": [8, 448]}
    assert init["encoder_hidden_states"]["max"] == [8, 1500, 384]
    assert profiles["encoder"]["input_features"] == {
        "min": [1, 80, 3000],
        "opt": [8, 80, 3000],
        "max": [8, 80, 3000],
    }
    for graph, entry_ in zip(GRAPHS, manifest["graphs"]):  # the real graphs' inputs, every axis
        assert onnx_graphs.profile_problems(entry_["inputs"], profiles[graph]) == []
        assert manifest["plan"]["engines"][graph]["profile"] == profiles[graph]
    assert manifest["plan"]["dimensions"]["past"] == {"min": 1, "opt": 224, "max": 447}
    assert manifest["plan"]["dimensions"]["prompt"] == {"min": 1, "opt": 4, "max": 448}


def test_uncovered_dimensions_are_named() -> None:
    profile = _encoder_profile()
    unknown = [{"name": "input_features", "shape": ["s0", 80, 3000]}]
    assert onnx_graphs.profile_problems(unknown, profile) == [
        "input input_features axis 0 is dynamic ('s0') and no profile dimension covers it "
        "(the profiles cover batch, prompt, past)"
    ]
    mels = [{"name": "input_features", "shape": ["batch", 128, 3000]}]
    assert onnx_graphs.profile_problems(mels, profile) == [
        "input input_features axis 1 is fixed at 128 but the profile gives 80..80"
    ]
    frames = [{"name": "input_features", "shape": ["batch", 80, "frames"]}]
    assert "axis 2 is dynamic ('frames')" in onnx_graphs.profile_problems(frames, profile)[0]
    extra = [{"name": "input_features", "shape": ["batch", 80, 3000]}, {"name": "flag", "shape": []}]
    assert onnx_graphs.profile_problems(extra, profile) == ["input flag has no optimisation profile"]


def test_an_uncovered_graph_is_refused_naming_the_input(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    path = _tiny_graph(
        tmp_path / "encoder.onnx",
        [helper.make_node("Relu", ["input_features"], ["y"])],
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["batch", 80, "frames"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 80, "frames"])],
    )
    with pytest.raises(
        ConversionError,
        match=r"encoder\.onnx: not covered by the optimisation profiles: input input_features axis 2",
    ):
        trt_build.check_graph(path, _encoder_profile())


def test_a_too_small_max_batch_is_refused_or_reported(tiny_onnx: Path, tmp_path: Path) -> None:
    info = ModelInfo.from_model_dir(tiny_onnx)
    small = onnx_graphs.profiles(info, 2)["decoder_step"]
    shapes = {"input_ids": (3, 1), "past_key.0": (3, 6, 10, 64)}
    assert onnx_graphs.shape_problems(small, shapes) == [
        "input_ids (3, 1) is outside the profile (1, 1)..(2, 1)",
        "past_key.0 (3, 6, 10, 64) is outside the profile (1, 6, 1, 64)..(2, 6, 447, 64)",
    ]
    assert onnx_graphs.shape_problems(onnx_graphs.profiles(info, 3)["decoder_step"], shapes) == []
    too_long = {"past_key.0": (1, 6, 448, 64)}  # the context holds 448 positions: 447 past at most
    assert onnx_graphs.shape_problems(small, too_long) != []
    for bad in (0, -1, 2000, "two", 2.5):
        with pytest.raises(ConversionError, match="max_batch .*must be a whole number from 1 to 1024"):
            convert(tiny_onnx, tmp_path / "x", "trt", "fp16", dry_run=True, max_batch=bad)
    assert not (tmp_path / "x").exists()
    assert trt_build.check_max_batch(None) == 8 and trt_build.check_max_batch("16") == 16


# -- plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "flags", "cleared", "fp32_layers"),
    [
        ("fp16", ["FP16"], [], ["NORMALIZATION", "SOFTMAX"]),
        ("bf16", ["BF16"], [], ["NORMALIZATION", "SOFTMAX"]),
        ("fp32", [], ["TF32"], []),
    ],
)
def test_plan_records_flags_workspace_profiles_and_target(
    tiny_plan: Path, precision: str, flags: list[str], cleared: list[str], fp32_layers: list[str]
) -> None:
    manifest = read_manifest(tiny_plan)
    info = ModelInfo.from_dict(manifest["model_info"])
    plan = trt_build.build_plan(info, precision, 4, 2048, manifest["graphs"])
    assert plan["precision"] == precision and plan["max_batch"] == 4 and plan["plan_version"] == 1
    builder = plan["builder"]
    assert builder["flags"] == flags and builder["cleared_flags"] == cleared
    assert builder["fp32_layers"] == fp32_layers
    assert builder["precision_constraints"] == ("PREFER" if fp32_layers else None)
    assert builder["workspace_bytes"] == 2048 << 20
    assert plan["tensorrt"]["target"] == ">=10,<11" and plan["tensorrt"]["parser_opsets"] == [9, 20]
    assert plan["dimensions"]["batch"] == {"min": 1, "opt": 4, "max": 4}
    assert plan["dimensions"]["mel_frames"] == 3000 and plan["dimensions"]["encoder_positions"] == 1500
    engines = plan["engines"]
    assert list(engines) == list(GRAPHS)
    assert engines["decoder_step"]["engine"] == "decoder_step.engine"
    assert engines["encoder"]["onnx"] == "encoder.onnx" and engines["encoder"]["opset"] == 18
    assert engines["decoder_init"]["profile"]["input_ids"]["max"] == [4, 448]
    spec = trt_build.engine_spec(plan, "decoder_step")
    assert isinstance(spec, tensorrt_api.EngineSpec)
    assert list(spec.flags) == flags and spec.workspace_bytes == 2048 << 20
    assert set(spec.profile) == set(graph_io("decoder_step", info.decoder_layers).inputs)
    json.dumps(plan)  # data only


# -- sources and options ------------------------------------------------------------------------


def test_only_fp32_onnx_directories_are_sources(tmp_path: Path, tiny_onnx: Path) -> None:
    int8 = tmp_path / "int8"
    int8.mkdir()
    write_manifest(int8, {"format": "onnx", "precision": "int8", "model_info": {}})
    with pytest.raises(ConversionError, match="holds int8 onnx graphs; TensorRT builds from the fp32 graphs"):
        convert(int8, tmp_path / "a", "trt", "fp16", dry_run=True)
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    write_manifest(ct2, {"format": "ct2", "precision": "int8"})
    with pytest.raises(ConversionError, match="is a ct2 model"):
        convert(ct2, tmp_path / "b", "trt", "fp16", dry_run=True)
    with pytest.raises(
        ConversionError, match="unknown precision 'int8' for trt; choose one of fp16, bf16, fp32"
    ):
        convert(tiny_onnx, tmp_path / "c", "trt", "int8", dry_run=True)
    with pytest.raises(ConversionError, match="trt conversion does not take opset"):
        convert(tiny_onnx, tmp_path / "d", "trt", "fp16", dry_run=True, opset=17)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2", "int8"]


# -- the command line ---------------------------------------------------------------------------


def test_cli_dry_run_exits_zero_with_plan_and_manifest(tiny_onnx: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "tiny-trt"
    assert (
        entry(
            ["--to", "trt", "--dry-run", "--max-batch", "4", "--precision", "bf16", str(tiny_onnx), str(out)]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["engines_built"] is False and manifest["precision"] == "bf16"
    assert json.loads((out / "trt_plan.json").read_text())["max_batch"] == 4


def test_cli_without_dry_run_names_what_is_missing_and_writes_nothing(
    tiny_onnx: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    reasons = _missing_or_skip()
    out = tmp_path / "tiny-trt"
    assert entry(["--to", "trt", str(tiny_onnx), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dwconvert: error: --to trt builds TensorRT engines")
    for reason in reasons:
        assert reason in err
    assert "--dry-run" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BackendUnavailable, match="needs TensorRT 10 and an NVIDIA GPU"):
        convert(tiny_onnx, out, "trt", "fp16")


def test_missing_reasons_are_precise_here() -> None:
    reasons = _missing_or_skip()
    import importlib.util

    from dwkit.devices import nvidia_gpu_present

    assert (tensorrt_api.NOT_INSTALLED in reasons) == (importlib.util.find_spec("tensorrt") is None)
    assert (tensorrt_api.NO_GPU in reasons) == (not nvidia_gpu_present())


# -- building (NVIDIA GPU + TensorRT) ------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engines_build_and_validate(
    tiny_onnx: Path, tiny_en_dir: Path, tmp_path: Path, precision: str
) -> None:
    _require_tensorrt()
    result = convert(
        tiny_en_dir, tmp_path / precision, "trt", precision, onnx_export=tiny_onnx, progress=False
    )
    manifest = result.manifest
    assert manifest["engines_built"] is True
    assert {f"{g}.engine" for g in GRAPHS} <= set(result.files)
    assert manifest["build"]["tensorrt"].startswith("10.")
    validation = result.validation
    print(f"\ntrt {precision}: {json.dumps({k: validation[k] for k in ('logits_max_abs', 'tokens_equal')})}")
    assert validation["passed"]
    if precision == "fp32":
        assert validation["gated"] and validation["tokens_equal"]


@pytest.mark.gpu
def test_tensorrt_api_selftest() -> None:
    _require_tensorrt()
    report = tensorrt_api.selftest()
    print(f"\n{json.dumps(report, indent=1)}")
    assert report["fp32"]["max_abs"] < 1e-4
    assert report["fp16"]["max_abs"] < 1e-2
