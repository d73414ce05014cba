"""transformers -> OpenVINO IR: a complete directory or nothing, a truthful manifest, validation
against transformers in OpenVINO itself, int8 calibrated on built-in speech, clear errors."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit.converters import convert, format_module  # noqa: E402
from dwkit.errors import BackendUnavailable, ConversionError  # noqa: E402
from dwkit.manifest import read_manifest, weights_checksum  # noqa: E402
from dwkit.model_info import ModelInfo  # noqa: E402
from dwkit.onnx_graphs import GRAPHS  # noqa: E402
from dwkit.runtimes.openvino import ir_file, weights_file  # noqa: E402
from tests.converters.test_onnx import converted as onnx_converted  # noqa: E402

CODE = ("dwkit.converters.openvino", "dwkit.runtimes.openvino", "dwkit.converters.template")
# Tests calibrate int8 on two windows of the bundled demo audio (the default, eight windows of
# espeak-ng speech, costs ~45 s of NNCF statistics on tiny.en).
TEST_CALIBRATION = {"calibration": "demo", "calibration_windows": 2}


def converted(source: Path, precision: str, cache: Path, validate: bool = True) -> Path:
    """`source` converted to openvino `precision` from the cached fp32 onnx export, cached across
    runs while the converter and inputs are unchanged. Shared with tests/runtimes/test_openvino*."""
    from importlib.metadata import version

    from dwkit.bundled import cache_lock, code_digest

    key = hashlib.sha256()
    key.update(code_digest(*CODE).encode())
    for package in ("openvino", "nncf", "torch", "transformers", "onnx"):
        key.update(f"{package}={version(package)}".encode())
    for path in sorted(source.glob("*.safetensors")):
        stat = path.stat()
        key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(str(validate).encode())
    out = cache / "openvino" / f"{source.name}-{precision}-{key.hexdigest()[:12]}"
    onnx_dir = onnx_converted(source, "fp32", cache, validate=True)
    with cache_lock(out.parent / f".{out.name}.lock"):
        for stale in out.parent.glob(f"{source.name}-{precision}-*"):
            if stale != out and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if not (out / "dwkit.json").is_file():
            convert(
                source,
                out,
                "openvino",
                precision,
                validate=validate,
                overwrite=True,
                threads=2,
                progress=False,
                onnx_export=onnx_dir,
                **(TEST_CALIBRATION if precision == "int8" else {}),
            )
    return out


@pytest.fixture(scope="module")
def tiny_fp32(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "fp32", dwkit_cache)


@pytest.fixture(scope="module")
def tiny_int8(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    return converted(tiny_en_dir, "int8", dwkit_cache)


def _ir_files() -> set[str]:
    return {name for graph in GRAPHS for name in (ir_file(graph), weights_file(graph))}


def test_fp32_writes_a_complete_directory_validated_against_transformers(
    tiny_fp32: Path, tiny_en_dir: Path
) -> None:
    names = {p.name for p in tiny_fp32.iterdir()}
    assert _ir_files() | {"dwkit.json", "tokenizer.json", "config.json", "preprocessor_config.json"} <= names
    assert not any(name.endswith(".onnx") or name.startswith(".") for name in names)  # staging removed
    manifest = read_manifest(tiny_fp32)
    assert manifest["format"] == "openvino" and manifest["precision"] == "fp32"
    assert manifest["source"]["weights_checksum"] == weights_checksum(tiny_en_dir)
    assert manifest["model_info"] == ModelInfo.from_hf_dir(tiny_en_dir).to_dict()
    assert {"openvino", "nncf", "torch"} <= set(manifest["library_versions"])
    assert [g["name"] for g in manifest["graphs"]] == list(GRAPHS)
    assert all(g["int8_ops"] == 0 for g in manifest["graphs"])
    validation = manifest["validation"]
    assert validation["gated"] and validation["passed"]
    assert validation["runtime"].endswith("inference precision f32")
    assert validation["tokens_equal"] and validation["logits_max_abs"] < 1e-3


@pytest.mark.slow  # NNCF statistics and weight compression: ~1-3 min on tiny.en
def test_int8_quantises_the_encoder_and_validates(tiny_int8: Path) -> None:
    manifest = read_manifest(tiny_int8)
    graphs = {g["name"]: g for g in manifest["graphs"]}
    assert graphs["encoder"]["int8_ops"] > 0  # activations quantised (FakeQuantize), not only weights
    assert manifest["calibration"] == {"source": "demo", "windows": 2} and manifest["float_fc2"] == "all"
    # every MatMul weight is stored int8, the float-activation fc2s' included (weight-only)
    assert _matmul_weight_types(tiny_int8 / "encoder.xml") <= {"u8", "i8"}
    validation = manifest["validation"]
    assert validation["gated"] and validation["passed"], validation["failures"]
    print(
        f"\nopenvino int8 vs hf fp32: encoder cosine {validation['encoder_cosine']:.5f}, logits "
        f"{validation['logits_max_abs']:.3f} / cosine {validation['logits_cosine']:.5f}, "
        f"token edits {validation['token_error_rate']:.3f}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_every_precision_converts_a_random_model(
    precision: str, random_tiny80_dir: Path, dwkit_cache: Path
) -> None:
    out = converted(random_tiny80_dir, precision, dwkit_cache)
    manifest = read_manifest(out)
    assert manifest["precision"] == precision and _ir_files() <= {p.name for p in out.iterdir()}
    validation = manifest["validation"]
    assert validation["gated"] and validation["passed"], validation["failures"]
    print(
        f"\nrandom tiny {precision}: logits {validation['logits_max_abs']:.3g} / cosine "
        f"{validation['logits_cosine']:.5f}, token edits {validation['token_error_rate']:.2f}"
    )


@pytest.mark.slow
def test_bf16_runs_the_bf16_hint_and_validates(tiny_en_dir: Path, dwkit_cache: Path) -> None:
    manifest = read_manifest(converted(tiny_en_dir, "bf16", dwkit_cache))
    assert manifest["validation"]["runtime"].endswith("inference precision bf16")
    assert manifest["validation"]["passed"], manifest["validation"]["failures"]


def test_bad_requests_fail_before_anything_is_written(tiny_en_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="choose one of fp32, bf16, int8"):
        convert(tiny_en_dir, out, "openvino", "fp16")
    with pytest.raises(ConversionError, match="does not take opset"):
        convert(tiny_en_dir, out, "openvino", "fp32", opset=18)
    with pytest.raises(ConversionError, match="calibration='nowhere'"):
        convert(tiny_en_dir, out, "openvino", "int8", calibration="nowhere")
    with pytest.raises(ConversionError, match="float_fc2='some': choose one of all, first"):
        convert(tiny_en_dir, out, "openvino", "int8", float_fc2="some")
    with pytest.raises(ConversionError, match="at least one window"):
        convert(tiny_en_dir, out, "openvino", "int8", calibration_windows=0)
    with pytest.raises(ConversionError, match="not an fp32 onnx model directory"):
        convert(tiny_en_dir, out, "openvino", "fp32", onnx_export=tmp_path)
    assert not out.exists()


def test_int8_without_espeak_ng_says_how_to_calibrate(
    tiny_en_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dwkit.speech

    monkeypatch.setattr(dwkit.speech, "espeak_available", lambda: False)
    with pytest.raises(ConversionError, match="espeak-ng is not installed.*calibration=demo"):
        convert(tiny_en_dir, tmp_path / "out", "openvino", "int8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["openvino", "nncf"])
def test_a_missing_library_is_one_clear_error(
    missing: str, tiny_en_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwkit import devices

    real = devices.module_installed
    monkeypatch.delitem(sys.modules, missing, raising=False)
    monkeypatch.setattr(devices, "module_installed", lambda name: name != missing and real(name))
    if missing == "openvino":
        with pytest.raises(BackendUnavailable, match=r"--to openvino needs openvino.*dwkit\[openvino\]"):
            format_module("openvino")
    else:
        with pytest.raises(ConversionError, match=r"NNCF: pip install 'dwkit\[openvino\]'"):
            convert(tiny_en_dir, tmp_path / "out", "openvino", "int8")
    assert not (tmp_path / "out").exists()


def _matmul_weight_types(ir: Path) -> set[str]:
    """The element types of the constants each MatMul's weight input is computed from."""
    import openvino as ov

    found = set()
    for op in ov.Core().read_model(str(ir)).get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() != "Constant" and node.get_input_size():
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Constant":  # activations x activations MatMuls have none
            found.add(node.get_element_type().get_type_name())
    return found
