"""The run's conversions: each (format, precision) the specs need, converted once in a
worker process into the conversion cache that `dwkit parity` shares (dwkit.conversion_cache)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Conversions:
    """Converted model directories by (format, precision), and what each conversion cost."""

    dirs: dict[tuple[str, str], Path] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def error(self, key: tuple[str, str]) -> str | None:
        """Why the row needing `key` cannot run, or None."""
        if key in self.errors:
            return f"conversion to {key[0]} {key[1]} failed: {self.errors[key]}"
        return None


def convert_all(
    wanted: list[tuple[str, str]], model_dir: Path, cache: Path, step: Callable[..., dict[str, Any]]
) -> Conversions:
    """Convert the model once per (format, precision) in `wanted`, in that order, each in a
    worker (`step` runs the job); a cached one is reused."""
    from dwkit.bench import openvino_genai
    from dwkit.conversion_cache import cached_conversion

    out = Conversions()
    for fmt, precision in wanted:
        kind, module = "convert", None
        if fmt == openvino_genai.FORMAT:  # a peer's layout, written by the bench (not dwconvert)
            kind, module = openvino_genai.JOB_KIND, openvino_genai.__name__
        options: dict[str, Any] = {}
        if fmt == "onnx":
            options["progress"] = False
            if precision != "fp32" and ("onnx", "fp32") in out.dirs:
                options["fp32_export"] = str(out.dirs[("onnx", "fp32")])

        job = {
            "kind": kind,
            "source": str(model_dir),
            "format": fmt,
            "precision": precision,
            "validate": False,
            "options": options,
        }
        convert = _in_worker(step, f"converting to {fmt} {precision}", job)
        target, result = cached_conversion(model_dir, fmt, precision, convert, cache, module)
        record: dict[str, Any] = {"format": fmt, "precision": precision, "dir": str(target)}
        record.update(result or {})
        record["cached"] = result is None
        out.records.append(record)
        if result is not None and "error" in result:
            out.errors[(fmt, precision)] = result["error"]
        else:
            out.dirs[(fmt, precision)] = target
    return out


def _in_worker(
    step: Callable[..., dict[str, Any]], label: str, job: dict[str, Any]
) -> Callable[[Path], dict[str, Any]]:
    """The conversion `job` as the cache calls it: into the directory the cache chose."""
    return lambda target: step(label, {**job, "out_dir": str(target)})
