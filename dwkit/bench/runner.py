"""A benchmark run: prepare the model, its conversions and the audio, run every system in its
own worker process, then compare each with the transformers baseline of the same mode.

Reads top to bottom as the run does: resolve the model (or build the synthetic one), make
the audio, convert each requested format once (cached), measure the matmul floor, run every
(system, mode) in a fresh `python -m dwkit.bench.worker`, add ratios and the goal, write
JSON, markdown and PNG. The parent never imports torch or a runtime library.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwkit.bench.compare import add_ratios, add_wer
from dwkit.bench.config import BenchConfig, device_kind
from dwkit.bench.convert import convert_all
from dwkit.bench.goal import goal_status
from dwkit.bench.measure import EncoderShape, default_threads, machine_info
from dwkit.bench.plan import (
    Target,
    available_peers,
    backends_of,
    job_count,
    peer_specs,
    plan_targets,
    unconvertible,
    wanted_conversions,
)
from dwkit.bench.pool import Launcher, launch_worker, run_interleaved, run_target
from dwkit.bench.prepare import prepare_audio, resolve_draft, resolve_model
from dwkit.bench.records import DEFINITIONS, audio_record, floor_record, model_record, worker_env_record
from dwkit.bench.retry import best_floor, better, starved, wait_for_quiet
from dwkit.errors import ConfigError

Step = Callable[[str, dict[str, Any]], dict[str, Any]]


def run_bench(config: BenchConfig, progress: bool = True, launch: Launcher | None = None) -> dict[str, Any]:
    """Run the benchmark `config` describes; write and return the result."""
    from tqdm import tqdm

    from dwkit.bench.report import write_reports
    from dwkit.bundled import default_cache_dir

    launch = launch or launch_worker
    cache = Path(config.cache_dir or default_cache_dir()).expanduser()
    threads = config.threads or default_threads()
    started = time.time()
    if device_kind(config.device) == "cuda" and launch is launch_worker:
        check_gpu(config.device)
    machine = machine_info(config.device)
    peers = available_peers(config)
    bar = tqdm(
        total=job_count(config, peers),
        desc="dwkit bench",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    def step(label: str, job: dict[str, Any]) -> dict[str, Any]:
        bar.set_postfix_str(label, refresh=True)
        timeout = config.timeout_s
        if config.budget_s is not None:  # what is left of the run's budget
            timeout = min(timeout, started + config.budget_s - time.time())
        if timeout <= 0:
            result = {
                "error": f"skipped: the run's --budget of {config.budget_s:g} s was spent",
                "skipped": True,
            }
        else:
            result = launch(job, timeout)
            if timeout < config.timeout_s and str(result.get("error", "")).startswith("timed out"):
                result["error"] = (
                    f"timed out after {timeout:.0f} s: the run's --budget of {config.budget_s:g} s ran out"
                )
        bar.update(config.repeat + 1 if job["kind"] == "run" else 1)
        return result

    try:
        model_dir = resolve_model(config, cache, step)
        audio_files, reference = prepare_audio(config, cache)
        unavailable = probe_backends(config, peers, step)
        conversions = convert_all(wanted_conversions(config, peers, unavailable), model_dir, cache, step)
        floor_job = {"kind": "floor", "threads": threads, "device": config.device}
        floor = step("matmul floor", floor_job) if config.floor else None
        targets = plan_targets(
            config,
            model_dir,
            conversions,
            peers,
            resolve_draft(config, model_dir, conversions.dirs),
            unavailable,
        )
        interleave = config.interleave and config.repeat > 1 and launch is launch_worker
        rows = _run_rows(targets, config, audio_files, threads, step, bar, interleave)
        if config.floor:  # again at the end: the best of two is closer to what the cores can do
            floor = best_floor(floor, step("matmul floor again", floor_job))
    finally:
        bar.close()

    shape = EncoderShape.from_config(json.loads((model_dir / "config.json").read_text()))
    add_ratios(rows)
    model = model_record(config, model_dir, shape)
    add_wer(rows, reference, meaningful=not model["synthetic"])
    result = {
        "benchmark": "dwkit bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "command": config.command,
        "config": config.to_dict(),
        "machine": {**machine, "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "threads": threads,
        "worker_env": worker_env_record(threads),
        "definitions": DEFINITIONS,
        "model": model,
        "audio": audio_record(audio_files, reference),
        "floor": floor_record(floor, shape),
        "conversions": conversions.records,
        "results": rows,
    }
    result["goal"] = goal_status(result, config.goal)
    result["files"] = write_reports(result, Path(config.output), config.stem)
    return result


def check_gpu(device: str) -> None:
    """A cuda run needs an NVIDIA GPU here: one line before any work, not a table of failures."""
    from dwkit.devices import nvidia_gpu_present

    if not nvidia_gpu_present():
        raise ConfigError(
            f"--device {device}: no NVIDIA GPU visible here (no /dev/nvidia* device, or CUDA_VISIBLE_DEVICES "
            "hides it); run on a GPU machine or use --device cpu"
        )


def probe_backends(config: BenchConfig, peers: list[str], step: Step) -> dict[str, str]:
    """On a GPU, which backends of the run cannot run here, and why (backend -> reason).

    A library can be installed yet built without CUDA (ctranslate2's CPU wheels, onnxruntime
    without its CUDA provider) or be missing (tensorrt); only importing it tells, and the
    parent imports no runtime library, so one worker asks every backend's own probe. Their
    rows are then skipped with the reason instead of failing after their conversions. On the
    CPU nothing is probed: a missing library fails its conversion or load with its own line.
    """
    if device_kind(config.device) != "cuda":
        return {}
    specs = config.backends + [spec for name in peers for spec in peer_specs(name, config)]
    backends = list(dict.fromkeys(b for s in specs for b in backends_of(s)))
    result = step("probing backends", {"kind": "probe", "backends": backends, "device": config.device})
    found = unconvertible(specs)  # a converter's library missing: nothing to run the row on
    if "error" not in result:  # a failed probe: every row tries and reports its own error
        found.update(result.get("unavailable") or {})
    return found


def _run_rows(
    targets: list[Target],
    config: BenchConfig,
    audio_files: list[Path],
    threads: int,
    step: Step,
    bar: Any,
    interleave: bool,
) -> list[dict[str, Any]]:
    """Every target's row, mode by mode: interleaved, or one at a time with a second run of a
    row a busy machine starved (the better of the two is kept)."""

    def advance(label: str, steps: int) -> None:
        bar.set_postfix_str(label, refresh=True)
        bar.update(steps)

    rows = []
    for mode in config.modes:
        in_mode = [t for t in targets if t.mode == mode]
        if interleave:
            rows += run_interleaved(in_mode, config, audio_files, threads, advance)
            continue
        for target in in_mode:
            row = run_target(target, config, audio_files, threads, step)
            if config.retry_starved and starved(row, threads):
                bar.total += config.repeat + 1
                bar.set_postfix_str(f"{target.label} was starved: waiting for a quieter machine")
                wait_for_quiet(threads)
                row = better(row, run_target(target, config, audio_files, threads, step))
            rows.append(row)
    return rows
