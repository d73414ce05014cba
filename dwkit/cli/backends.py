"""`dwkit backends`: every registered backend, whether it runs here, and why not.

Usable means its library imports and a device it runs on is present; the reason comes from
the backend class's own `unavailable_reason()` (or, when its module cannot be imported, the
pip extra it needs). Checking a backend imports its library, so this takes a few seconds.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("backends", help="list the backends and whether each is usable here")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def run(args: argparse.Namespace) -> int:
    rows = survey()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render(rows), end="")
    return 0


def survey() -> list[dict[str, Any]]:
    """One row per registered backend: name, usable, devices, precisions, pip extra, reason."""
    from dwkit.config import backend_precisions, backend_unavailable_reason, nvidia_gpu_present
    from dwkit.runtimes import BACKENDS

    gpu = nvidia_gpu_present()
    rows = []
    for name, (_module, _cls, extra) in BACKENDS.items():
        devices = []
        reasons = []
        for device in ("cpu", "cuda"):
            if device == "cuda" and not gpu and name not in ("trt",):
                continue  # no GPU here: the CPU answer says it all
            reason = backend_unavailable_reason(name, device)
            if reason is None and device == "cuda":
                reason = _cuda_reason(name)
            if reason is None:
                devices.append(device)
            elif reason not in reasons:
                reasons.append(reason)
        rows.append(
            {
                "name": name,
                "usable": bool(devices),
                "devices": devices,
                "precisions": list(backend_precisions(name)),
                "extra": extra,
                "reason": None if devices else "; ".join(reasons),
            }
        )
    return rows


def _cuda_reason(name: str) -> str | None:
    """Whether the installed library of a usable backend was built with CUDA."""
    try:
        if name == "hf":
            import torch

            return None if torch.cuda.is_available() else "torch is a CPU build (or sees no CUDA device)"
        if name == "ct2":
            import ctranslate2

            return None if ctranslate2.get_cuda_device_count() > 0 else "ctranslate2 sees no CUDA device"
        if name == "onnx":
            import onnxruntime

            providers = onnxruntime.get_available_providers()
            return None if "CUDAExecutionProvider" in providers else "needs onnxruntime-gpu: 'dwkit[gpu]'"
    except Exception as exc:  # a library that fails to probe its devices is not usable on them
        return f"CUDA probe failed ({exc})"
    return None


def render(rows: list[dict[str, Any]]) -> str:
    table = [("backend", "usable", "devices", "pip extra", "precisions / why not")]
    for row in rows:
        detail = ", ".join(row["precisions"]) if row["usable"] else row["reason"]
        table.append(
            (
                row["name"],
                "yes" if row["usable"] else "no",
                ", ".join(row["devices"]) or "-",
                f"dwkit[{row['extra']}]",
                detail,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in table]
    return "\n".join(line.rstrip() for line in lines) + "\n"
