"""A busy shared machine: recognise a row that waited for cores, wait for a quieter
moment, and keep the better of two measurements (rows and the matmul floor alike)."""

from __future__ import annotations

import os
import time
from typing import Any

# A single-shot row is run again when it got less than this share of its cores while the
# load average said other processes held them; the better one is kept.
STARVED_CPU_USE = 0.75


def starved(row: dict[str, Any], threads: int) -> bool:
    """The row waited for cores: low CPU use while the load average exceeded the cores we use."""
    use, load = row.get("cpu_utilisation"), row.get("loadavg_1m")
    return use is not None and use < STARVED_CPU_USE and bool(load) and max(load) > threads + 0.5


def wait_for_quiet(threads: int, max_wait_s: float = 180.0, poll_s: float = 10.0) -> None:
    """Wait (at most `max_wait_s`) until the 1-minute load average drops below our threads."""
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] >= threads and time.monotonic() < deadline:
        time.sleep(poll_s)


def better(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Of two runs of one row, the one that had its cores more (both recorded under `attempts`)."""
    runs = [r for r in (first, second) if "error" not in r] or [second]
    kept = dict(max(runs, key=lambda r: r.get("cpu_utilisation") or 0.0))
    kept["attempts"] = [
        {k: r.get(k) for k in ("rtfx", "cpu_utilisation", "loadavg_1m", "error") if k in r}
        for r in (first, second)
    ]
    return kept


def best_floor(first: dict[str, Any] | None, second: dict[str, Any]) -> dict[str, Any] | None:
    """The higher matmul rates of two floor measurements, both kept under `measurements`."""
    found = [f for f in (first, second) if f and "error" not in f]
    if not found:
        return first or second
    best = {**found[0]}
    for key in ("fp32_gflops", "bf16_gflops", "fp16_gflops"):  # fp16: measured on a GPU only
        if all(key in f for f in found):
            best[key] = max(f[key] for f in found)
    best["measurements"] = found
    return best
