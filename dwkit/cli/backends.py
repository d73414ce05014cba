"""`dwkit backends`: every registered backend, whether it runs here, and why not.

Rows come from the registry (built-in declarations and `dwkit.backends` plugins). Usable means
a device it declares is present and its declaration's probe passes (its library imports, and
for CUDA was built with it). Probing imports each library, so this takes a few seconds.
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
        print(render(rows) + render_auto(next((r["auto"] for r in rows if r.get("auto")), None)), end="")
    return 0


def auto_choice() -> dict[str, Any] | None:
    """What `backend = "auto"` runs a large transformers checkpoint on here, and why."""
    from dwkit import cpu_choice, devices, runtimes

    choice = cpu_choice.choose(runtimes.unavailable_reason)
    if choice is None:
        return None
    flags = devices.cpu_flags()
    shown = [flag for flag in devices.CPU_FEATURES if flag in flags]
    return {**choice.to_dict(), "min_d_model": cpu_choice.min_d_model(), "cpu_flags": shown}


def render_auto(choice: dict[str, Any] | None) -> str:
    """The auto line under the table: the CPU's kind, the chosen spec and the measured reason."""
    if choice is None:
        return "\nauto: no backend usable here for transformers checkpoints\n"
    skipped = f"; skipped {'; '.join(choice['skipped'])}" if choice["skipped"] else ""
    return (
        f"\nauto on this CPU ({', '.join(choice['cpu_flags']) or 'no AVX2'}: kind {choice['kind']}) runs "
        f"transformers checkpoints with d_model >= {choice['min_d_model']} as {choice['spec']}: "
        f"{choice['reason']}{skipped}. Smaller checkpoints and converted directories run on their own format.\n"
    )


def survey() -> list[dict[str, Any]]:
    """One row per registered backend (built-in and plugins): usable devices, precisions,
    pip extra, options and why not; a plugin that failed to load is listed with the reason."""
    from dwkit import devices, runtimes

    gpu = devices.nvidia_gpu_present()
    table = runtimes.declarations()
    choice = auto_choice()
    rows = []
    for name, declared in table.specs.items():
        usable, reasons = [], []
        for device in declared.devices:
            if device == "cuda" and not gpu and not declared.gpu_only:
                continue  # no GPU here: the CPU answer says it all
            reason = runtimes.unavailable_reason(name, device)
            if reason is None:
                usable.append(device)
            elif reason not in reasons:
                reasons.append(reason)
        rows.append(
            {
                "name": name,
                "usable": bool(usable),
                "devices": usable,
                "precisions": list(declared.accepted_precisions),
                "formats": list(declared.formats),
                "options": [option.name for option in declared.options],
                "extra": declared.extra,
                "summary": declared.summary,
                "reason": None if usable else "; ".join(reasons),
                # what auto runs a large transformers checkpoint on (the hf row's)
                "auto": choice if name == "hf" else None,
            }
        )
    for name, reason in table.broken.items():
        rows.append(
            {
                "name": name,
                "usable": False,
                "devices": [],
                "precisions": [],
                "formats": [],
                "options": [],
                "extra": None,
                "summary": None,
                "reason": reason,
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    table = [("backend", "usable", "devices", "pip extra", "precisions / why not")]
    for row in rows:
        detail = ", ".join(row["precisions"]) if row["usable"] else row["reason"]
        table.append(
            (
                row["name"],
                "yes" if row["usable"] else "no",
                ", ".join(row["devices"]) or "-",
                f"dwkit[{row['extra']}]" if row["extra"] else "-",
                detail,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in table]
    return "\n".join(line.rstrip() for line in lines) + "\n"
