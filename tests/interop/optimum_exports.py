"""ONNX exports made by the field's own tools, as users download them, cached per run.

optimum-onnx's exporter (`optimum.exporters.onnx.main_export`, what `optimum-cli export onnx`
runs) writes encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx and
decoder_model_merged.onnx beside the checkpoint's json files. The variants onnx-community
ships next to them are made with the same libraries their scripts use: onnxruntime's
`quantize_dynamic` (`*_int8.onnx`) and `OnnxModel.convert_float_to_float16` (`*_fp16.onnx`,
float16 inputs and outputs). Nothing here is dwkit code, so the tests prove dwkit reads
other tools' files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

GRAPHS = ("encoder_model", "decoder_model", "decoder_with_past_model", "decoder_model_merged")
PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")


def _key(source: Path, variants: tuple[str, ...]) -> str:
    key = hashlib.sha256(Path(__file__).read_bytes())
    for package in PACKAGES:
        key.update(f"{package}={version(package)}".encode())
    for path in sorted(source.glob("*.safetensors")):
        stat = path.stat()
        key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(",".join(variants).encode())
    return key.hexdigest()[:12]


def optimum_export(source: Path, cache: Path, variants: tuple[str, ...] = ()) -> Path:
    """`source` exported by optimum (plus `variants`: "int8", "fp16"), cached under `cache/optimum`."""
    pytest.importorskip("optimum.exporters.onnx", reason="needs optimum-onnx: pip install 'dwkit[dev]'")
    from dwkit.bundled import cache_lock

    out = cache / "optimum" / f"{source.name}-{_key(source, variants)}"
    with cache_lock(out.parent / f".{out.name}.lock"):
        for stale in out.parent.glob(f"{source.name}-*"):
            if stale != out and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if not (out / "config.json").is_file():
            tmp = out.with_name(f".{out.name}.partial")
            shutil.rmtree(tmp, ignore_errors=True)
            _export(source, tmp, variants)
            os.replace(tmp, out)
    return out


def _export(source: Path, out: Path, variants: tuple[str, ...]) -> None:
    from optimum.exporters.onnx import main_export

    main_export(str(source), output=str(out), task="automatic-speech-recognition-with-past", device="cpu")
    for graph in ("encoder_model", "decoder_model_merged") if "int8" in variants else ():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            out / f"{graph}.onnx",
            out / f"{graph}_int8.onnx",
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    for graph in GRAPHS[:3] if "fp16" in variants else ():  # split decoders: the merged one is int8's
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(out / f"{graph}.onnx")))
        model.convert_float_to_float16(keep_io_types=False)
        model.save_model_to_file(str(out / f"{graph}_fp16.onnx"))


def onnx_community_layout(export: Path, out: Path) -> Path:
    """The hub layout: json files on top, every graph in onnx/ (hard links: no copies)."""
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for path in export.iterdir():
        target = out / "onnx" / path.name if path.suffix in (".onnx", ".onnx_data") else out / path.name
        if not target.exists():
            os.link(path, target)
    return out
