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
from dwkit.bench.config import BenchConfig
from dwkit.bench.convert import convert_all
from dwkit.bench.goal import goal_status
from dwkit.bench.measure import EncoderShape, default_threads, machine_info
from dwkit.bench.plan import Target, available_peers, job_count, plan_targets, wanted_conversions
from dwkit.bench.pool import Launcher, launch_worker, run_interleaved, run_target
from dwkit.bench.prepare import prepare_audio, resolve_draft, resolve_model
from dwkit.bench.records import DEFINITIONS, audio_record, floor_record, model_record, worker_env_record
from dwkit.bench.retry import best_floor, better, starved, wait_for_quiet

Step = Callable[[str, dict[str, Any]], dict[str, Any]]


def run_bench(config: BenchConfig, progress: bool = True, launch: Launcher | None = None) -> dict[str, Any]:
    """Run the benchmark `config` describes; write and return the result."""
    from tqdm import tqdm

    from dwkit.bench.report import write_reports
    from dwkit.bundled import default_cache_dir

    launch = launch or launch_worker
    cache = Path(config.cache_dir or default_cache_dir()).expanduser()
    threads = config.threads or default_threads()
    machine = machine_info()
    started = time.time()
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
        result = launch(job, config.timeout_s)
        bar.update(config.repeat + 1 if job["kind"] == "run" else 1)
        return result

    try:
        model_dir = resolve_model(config, cache, step)
        audio_files, reference = prepare_audio(config, cache)
        conversions = convert_all(wanted_conversions(config, peers), model_dir, cache, step)
        floor = step("matmul floor", {"kind": "floor", "threads": threads}) if config.floor else None
        targets = plan_targets(
            config, model_dir, conversions, peers, resolve_draft(config, model_dir, conversions.dirs)
        )
        interleave = config.interleave and config.repeat > 1 and launch is launch_worker
        rows = _run_rows(targets, config, audio_files, threads, step, bar, interleave)
        if config.floor:  # again at the end: the best of two is closer to what the cores can do
            floor = best_floor(floor, step("matmul floor again", {"kind": "floor", "threads": threads}))
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
