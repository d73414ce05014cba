"""The neutral descriptions both layers read: one optimisation-profile function for
onnxruntime's TensorRT provider and the TensorRT builder, and one ONNX graph checker."""

from __future__ import annotations

from pathlib import Path

import pytest

from dwkit.errors import ConversionError
from dwkit.model_info import ModelInfo
from dwkit.onnx_graphs import GRAPHS, profiles
from dwkit.runtimes.base import RuntimeConfig


def _provider_shapes(profile: dict[str, dict[str, list[int]]], key: str) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, bounds[key]))}" for name, bounds in profile.items())


def test_the_provider_and_the_builder_get_the_same_profiles(random_tiny80_dir: Path) -> None:
    from dwkit import trt_build
    from dwkit.runtimes.onnx import _trt_profile

    info = ModelInfo.from_hf_dir(random_tiny80_dir)
    plan = trt_build.build_plan(info, "fp16", 4, 1024, [{"opset": 18}] * len(GRAPHS))
    config = RuntimeConfig(device="cuda", batch_size=4, options={"max_batch": 4})
    for graph in GRAPHS:
        provider = _trt_profile(graph, info, config)
        built = plan["engines"][graph]["profile"]
        assert built == profiles(info, 4)[graph]
        for key in ("min", "opt", "max"):
            assert provider[f"trt_profile_{key}_shapes"] == _provider_shapes(built, key)


def test_decoders_cover_the_beams_and_the_encoder_only_the_audio(random_tiny80_dir: Path) -> None:
    info = ModelInfo.from_hf_dir(random_tiny80_dir)
    found = profiles(info, 20, opt_batch=4, encoder_max_batch=4)
    assert found["encoder"]["input_features"] == {
        "min": [1, info.n_mels, 3000],
        "opt": [4, info.n_mels, 3000],
        "max": [4, info.n_mels, 3000],
    }
    step = found["decoder_step"]["past_key.0"]
    assert step["opt"][0] == 4 and step["max"][0] == 20
    assert step["min"][2] == 1 and step["max"][2] == info.n_text_ctx - 1  # the past never fills the context
    assert found["decoder_init"]["input_ids"]["max"] == [20, info.n_text_ctx]


def test_the_graph_checker_refuses_a_broken_file_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from dwkit.onnx_check import inspect_graph

    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "encoder.onnx"
    import onnx

    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ConversionError, match=r"^encoder\.onnx: onnx\.checker rejects it \(") as caught:
        inspect_graph(path)
    assert "\n" not in str(caught.value)
