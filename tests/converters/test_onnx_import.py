"""`dwconvert --from onnx --to hf`: a transformers checkpoint recovered from dwkit's own ONNX
export and from optimum's, bit for bit at fp32; quantised graphs refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from safetensors.numpy import load_file  # noqa: E402

from dwkit.cli.dwconvert import entry as dwconvert  # noqa: E402
from dwkit.compare import compare_backends, validation_mel  # noqa: E402
from dwkit.converters.onnx_import import import_onnx  # noqa: E402
from dwkit.errors import ConversionError  # noqa: E402
from dwkit.manifest import read_manifest  # noqa: E402
from dwkit.runtimes import load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402
from tests.interop.optimum_exports import optimum_export  # noqa: E402


def assert_same_weights(original: Path, imported: Path) -> None:
    theirs, ours = (
        load_file(str(original / "model.safetensors")),
        load_file(str(imported / "model.safetensors")),
    )
    assert sorted(ours) == sorted(theirs)
    different = [name for name in theirs if not np.array_equal(theirs[name], ours[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_dwkit_export_round_trips_bit_for_bit(
    tiny_en_dir: Path, dwkit_cache: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    exported = converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)
    out = tmp_path / "back"
    assert dwconvert(["--from", "onnx", "--to", "hf", str(exported), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_same_weights(tiny_en_dir, out)
    assert read_manifest(out)["source"]["kind"] == "onnx-dwkit"
    runtime = RuntimeConfig(threads=2)
    report = compare_backends(load(tiny_en_dir, "hf", runtime), load(out, config=runtime), validation_mel(80))
    assert report.logits_max_abs == 0.0 and report.tokens_equal


def test_optimum_export_round_trips_bit_for_bit(
    random_tiny80_dir: Path, dwkit_cache: Path, tmp_path: Path
) -> None:
    export = optimum_export(random_tiny80_dir, dwkit_cache)
    result = import_onnx(export, tmp_path / "back")
    assert result.fmt == "hf" and result.precision == "fp32"
    assert_same_weights(random_tiny80_dir, result.out_dir)
    assert (result.out_dir / "tokenizer.json").read_bytes() == (export / "tokenizer.json").read_bytes()


def test_quantised_graphs_are_refused(tiny_en_dir: Path, dwkit_cache: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    export = optimum_export(tiny_en_dir, dwkit_cache, variants=("int8", "fp16"))
    with pytest.raises(ConversionError, match="quantised weights.*fp32"):
        import_onnx(export, tmp_path / "int8", precision="int8")
    renamed = tmp_path / "renamed"  # quantised graphs under the fp32 names: found by their ops
    renamed.mkdir()
    for path in export.iterdir():
        if path.suffix != ".onnx":
            (renamed / path.name).symlink_to(path)
    for graph in ("encoder_model", "decoder_model_merged"):
        (renamed / f"{graph}.onnx").symlink_to(export / f"{graph}_int8.onnx")
    assert dwconvert(["--from", "onnx", "--to", "hf", str(renamed), str(tmp_path / "int8")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "quantised weights (DynamicQuantizeLinear, MatMulInteger)" in err
    assert not (tmp_path / "int8").exists()


def test_fp16_graphs_are_upcast(tiny_en_dir: Path, dwkit_cache: Path, tmp_path: Path) -> None:
    """tiny.en's weights came from a float16 model, so fp16 graphs hold them exactly."""
    export = optimum_export(tiny_en_dir, dwkit_cache, variants=("int8", "fp16"))
    result = import_onnx(export, tmp_path / "fp16", precision="fp16")
    assert read_manifest(result.out_dir)["source"]["precision"] == "fp16"
    assert_same_weights(tiny_en_dir, result.out_dir)


def test_not_an_export_is_one_clear_error(tiny_en_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert dwconvert(["--from", "onnx", "--to", "hf", str(tiny_en_dir), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not an ONNX Whisper export" in err
