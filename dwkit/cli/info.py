"""`dwkit info MODEL_DIR`: what a model directory holds, and whether it looks intact.

Reads only metadata and file headers (no runtime library is imported): the format and
precision, the model's shape, every file and its size, the manifest's source, tool and
library versions, and the validation the converter recorded. Problems it can see cheaply
(a missing or truncated weights file, an unreadable manifest) are listed and make the exit
status 1; `--verify` also recomputes the weights checksum the manifest recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dwkit.errors import DwkitError, ModelError

_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_MANIFEST_FACTS = (
    "source",
    "tool",
    "weights_checksum",
    "library_versions",
    "conversion_seconds",
    "word_timestamps",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="show what a model directory holds (format, shape, files, manifest)")
    parser.add_argument("model_dir", type=Path, help="a transformers checkpoint or a dwconvert output")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--verify", action="store_true", help="recompute the weights checksum the manifest recorded"
    )


def run(args: argparse.Namespace) -> int:
    report = describe(args.model_dir, verify=args.verify)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        sys.stdout.write(render(report))
    return 1 if report["problems"] else 0


def describe(model_dir: str | Path, verify: bool = False) -> dict[str, Any]:
    """Everything `dwkit info` reports about `model_dir`, as a JSON-ready dict."""
    from dwkit.manifest import read_manifest
    from dwkit.runtimes import backend_of

    model_dir = Path(model_dir).expanduser()
    if not model_dir.exists():
        raise ModelError(f"{model_dir}: no such model directory")
    from dwkit import foreign

    if not model_dir.is_dir() and foreign.ggml_file(model_dir) is None:
        raise ModelError(f"{model_dir}: is a file; expected a model directory or a whisper.cpp model file")
    problems: list[str] = []
    try:
        manifest = read_manifest(model_dir)
    except ModelError as exc:
        manifest, problems = None, [str(exc)]
    try:
        fmt = str(manifest["format"]) if manifest and manifest.get("format") else backend_of(model_dir)
    except ModelError:
        if not problems:
            raise
        fmt = "unknown"
    files = sorted(
        (
            {"name": str(p.relative_to(model_dir)) if p != model_dir else p.name, "bytes": p.stat().st_size}
            for p in (model_dir.rglob("*") if model_dir.is_dir() else [model_dir])
            if p.is_file()
        ),
        key=lambda f: f["name"],
    )
    report: dict[str, Any] = {
        "path": str(model_dir.resolve()),
        "format": fmt,
        "layout": None if manifest else _layout(model_dir, fmt),
        "precision": _precision(model_dir, manifest),
        "shape": _shape(model_dir, problems),
        "files": files,
        "total_bytes": sum(f["bytes"] for f in files),
        "manifest": {k: manifest[k] for k in _MANIFEST_FACTS if k in manifest} if manifest else None,
        "validation": (manifest or {}).get("validation"),
        "validation_recorded": bool(manifest) and "validation" in manifest,
        "problems": problems,
    }
    problems.extend(_weight_problems(model_dir, fmt, manifest))
    if verify:
        report["checksum_verified"] = _verify_checksum(model_dir, manifest, problems)
    return report


def _layout(model_dir: Path, fmt: str) -> str:
    """What a directory without dwkit.json was recognised as (by its own files)."""
    from dwkit import foreign

    if fmt == "hf":
        return "transformers checkpoint (no dwkit.json)"
    try:
        return foreign.describe_layout(model_dir) or f"{fmt} model (no dwkit.json)"
    except ModelError as exc:
        return str(exc)


def _precision(model_dir: Path, manifest: dict[str, Any] | None) -> str | None:
    if manifest and manifest.get("precision"):
        return str(manifest["precision"])
    from dwkit import foreign

    try:
        stored = foreign.stored_precision(model_dir)
    except (DwkitError, OSError, ValueError):
        stored = None
    if stored:
        return stored
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    dtype = config.get("torch_dtype") or config.get("dtype")
    return _DTYPES.get(str(dtype), str(dtype)) if dtype else "fp32"


def _shape(model_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    from dwkit.model_info import ModelInfo

    try:
        info = ModelInfo.from_model_dir(model_dir)
    except (DwkitError, KeyError, TypeError, ValueError) as exc:
        problems.append(f"model shape unreadable: {exc}")
        return None
    return {
        "n_mels": info.n_mels,
        "d_model": info.d_model,
        "encoder_layers": info.encoder_layers,
        "decoder_layers": info.decoder_layers,
        "encoder_heads": info.encoder_heads,
        "decoder_heads": info.decoder_heads,
        "ffn_dim": info.ffn_dim,
        "vocab_size": info.vocab_size,
        "n_audio_ctx": info.n_audio_ctx,
        "n_text_ctx": info.n_text_ctx,
        "multilingual": info.multilingual,
        "languages": len(info.lang_to_id),
    }


def _weight_problems(model_dir: Path, fmt: str, manifest: dict[str, Any] | None) -> list[str]:
    """Missing or truncated weight files, from names and headers only, as each format's
    declaration checks them (the first backend that runs the format)."""
    from dwkit.runtimes import runners_of

    for declared in runners_of(fmt):
        if declared.file_problems is not None:
            return declared.file_problems(model_dir, manifest or {})
    return []


def _verify_checksum(model_dir: Path, manifest: dict[str, Any] | None, problems: list[str]) -> bool | None:
    from dwkit.manifest import weights_checksum

    recorded = (manifest or {}).get("weights_checksum")
    if not recorded:
        return None
    try:
        actual = weights_checksum(model_dir)
    except OSError as exc:
        problems.append(f"weights checksum: cannot read the weights ({exc})")
        return False
    if actual != recorded:
        problems.append("weights checksum differs from the manifest's (files changed or corrupted)")
        return False
    return True


# -- the human table ---------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("model", report["path"])]
    precision = f" (precision {report['precision']})" if report["precision"] else ""
    rows.append(("format", f"{report['format']}{precision}"))
    shape = report["shape"]
    if shape:
        languages = f"{shape['languages']} languages" if shape["multilingual"] else "English-only"
        rows.append(
            (
                "shape",
                f"{shape['n_mels']} mels, d_model {shape['d_model']}, {shape['encoder_layers']} encoder + "
                f"{shape['decoder_layers']} decoder layers, {shape['encoder_heads']} heads, "
                f"ffn {shape['ffn_dim']}, vocab {shape['vocab_size']}, {languages}",
            )
        )
    manifest = report["manifest"]
    if manifest is None:
        rows.append(("manifest", f"none: {report.get('layout') or 'a plain transformers checkpoint'}"))
    else:
        source = manifest.get("source") or {}
        if isinstance(source, dict):
            label = source.get("name") or source.get("path") or source.get("kind") or "?"
            checksum = source.get("weights_checksum")
            rows.append(("source", f"{label}" + (f" (weights sha256 {checksum[:12]}…)" if checksum else "")))
        tool = str(manifest.get("tool", "?"))
        if manifest.get("conversion_seconds") is not None:
            tool += f", converted in {manifest['conversion_seconds']} s"
        rows.append(("tool", tool))
        versions = manifest.get("library_versions") or {}
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"))
        if manifest.get("weights_checksum"):
            rows.append(("checksum", f"sha256 {manifest['weights_checksum']}"))
        if "word_timestamps" in manifest:  # onnx/trt: only exports made with --word-timestamps
            words = "yes" if manifest["word_timestamps"] else "no (convert again with --word-timestamps)"
            rows.append(("word timestamps", words))
    rows.append(("validation", _validation_line(report["validation"], report["validation_recorded"])))
    if "checksum_verified" in report:
        verified = {True: "matches the manifest", False: "DIFFERS", None: "no checksum recorded"}
        rows.append(("verified", verified[report["checksum_verified"]]))
    rows.append(("files", f"{len(report['files'])}, {_size(report['total_bytes'])} in all"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    name_width = max((len(f["name"]) for f in report["files"]), default=0)
    lines += [f"  {f['name']:<{name_width}}  {_size(f['bytes']):>10}" for f in report["files"]]
    problems = report["problems"]
    lines.append(f"{'problems':<{width}}  " + ("none" if not problems else f"{len(problems)}"))
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines) + "\n"


def _validation_line(validation: Any, recorded: bool) -> str:
    if not validation:
        return "skipped (converted with --no-validate)" if recorded else "none recorded"
    if not isinstance(validation, dict):
        return str(validation)
    verdict = "passed" if validation.get("passed") else "FAILED"
    parts = [f"{verdict} against {validation.get('reference', 'transformers')}"]
    if "tokens_equal" in validation:
        parts.append("tokens equal" if validation["tokens_equal"] else "tokens differ")
    for key in ("logits_max_abs", "logits_cosine", "encoder_max_abs"):
        if isinstance(validation.get(key), (int, float)):
            parts.append(f"{key} {validation[key]:.4g}")
    if validation.get("failures"):
        parts.append("failures: " + "; ".join(map(str, validation["failures"])))
    return ", ".join(parts)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
