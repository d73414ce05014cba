"""The worker pool: every (system, mode) runs in its own `python -m dwkit.bench.worker`, so
its load time and peak memory are its own and a crash costs one row. Single-shot workers
take one JSON job; `--serve` workers stay loaded so the repeats of several systems can be
interleaved round-robin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwkit.bench.config import STUDENT, BenchConfig
from dwkit.bench.measure import WORKER_ENV
from dwkit.bench.plan import Target

Launcher = Callable[[dict[str, Any], float], dict[str, Any]]


def _row(target: Target) -> dict[str, Any]:
    row: dict[str, Any] = {
        "label": target.label,
        "system": target.system,
        "backend": target.backend,
        "precision": target.precision,
        "mode": target.mode,
        "model_dir": str(target.model_dir) if target.model_dir else None,
    }
    if target.error or target.model_dir is None:
        row["error"] = target.error or "no model directory"
    if target.skipped:
        row["skipped"] = True
    return row


def _run_job(target: Target, config: BenchConfig, audio_files: list[Path], threads: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "system": target.system,
        "backend": target.backend,
        "precision": target.precision,
        "model_dir": str(target.model_dir),
        "mode": target.mode,
        "device": config.device,
        "audio": [str(p) for p in audio_files],
        "repeat": config.repeat,
        "threads": threads,
        "batch_size": config.batch_size,
        "language": config.language,
        "tokens_per_window": config.tokens_per_window,
        "warmup": config.warmup,
        "draft_model": str(target.draft_dir) if target.draft_dir else None,
        # a student is an hf checkpoint: it runs at an hf spec's precision; a given directory at its own
        "draft_precision": target.precision if config.draft == STUDENT and target.backend == "hf" else None,
        "draft_tokens": config.draft_tokens,
        "draft_adaptive": config.draft_adaptive,
        "runtime_options": target.options,  # a pair's converted sides
    }


def run_target(
    target: Target,
    config: BenchConfig,
    audio_files: list[Path],
    threads: int,
    step: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """One (system, mode) in one single-shot worker: load, warm up, every repeat, figures."""
    row = _row(target)
    if "error" in row:
        return row
    load_before = os.getloadavg()[0]
    row.update(step(f"{target.label} {target.mode}", _run_job(target, config, audio_files, threads)))
    row["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # other processes' share
    return row


def worker_env(threads: int) -> dict[str, str]:
    env = {**os.environ, **WORKER_ENV}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


WORKER_COMMAND = [sys.executable, "-m", "dwkit.bench.worker"]


def launch_worker(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run `job` in a fresh `python -m dwkit.bench.worker`; its JSON, or {"error": one line}."""
    with tempfile.TemporaryFile("w+") as stderr:
        try:
            proc = subprocess.run(
                WORKER_COMMAND,
                input=json.dumps(job),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=timeout_s,
                env=worker_env(int(job.get("threads") or 0)),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s (raise --timeout)"}
        return _reply(proc.stdout.splitlines(), proc.returncode, stderr)


def _reply(lines: list[str], returncode: int | None, stderr: Any) -> dict[str, Any]:
    lines = [line for line in lines if line.strip()]
    if lines:
        try:
            return dict(json.loads(lines[-1]))
        except json.JSONDecodeError:
            pass
    stderr.seek(0)
    tail = [line for line in stderr.read().splitlines() if line.strip()][-1:] or ["no output"]
    return {"error": f"worker exited with code {returncode}: {tail[0][:300]}"}


class WorkerProcess:
    """A `python -m dwkit.bench.worker --serve` holding one loaded system between repeats."""

    def __init__(self, threads: int, timeout_s: float):
        self.timeout_s = timeout_s
        self.stderr = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [*WORKER_COMMAND, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=worker_env(threads),
        )

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one command; its reply, or {"error": ...} when the worker died or timed out."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        timer = threading.Timer(self.timeout_s, self.proc.kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        finally:
            timer.cancel()
        if line.strip():
            return dict(json.loads(line))
        code = self.proc.poll()
        if code is None or code == -9:
            self.close()
            code = self.proc.returncode
        reply = _reply([], code, self.stderr)
        if code == -9:
            reply["error"] = f"timed out after {self.timeout_s:.0f} s (raise --timeout), or killed"
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def run_interleaved(
    targets: list[Target],
    config: BenchConfig,
    audio_files: list[Path],
    threads: int,
    progress: Callable[[str, int], None],
) -> list[dict[str, Any]]:
    """Load every target of one mode in its own worker (one at a time), then run their
    repeats round-robin, the order rotating each round, as the per-backend scripts do: a
    neighbour's burst of load then lands on every system alike instead of on one row."""
    rows = [_row(t) for t in targets]
    workers: dict[int, WorkerProcess] = {}
    load_before = os.getloadavg()[0]
    try:
        for i, target in enumerate(targets):
            if "error" in rows[i]:
                progress(target.label, config.repeat + 1)
                continue
            progress(f"loading {target.label} {target.mode}", 0)
            worker = WorkerProcess(threads, config.timeout_s)
            reply = worker.ask({"op": "start", "job": _run_job(target, config, audio_files, threads)})
            progress(f"loaded {target.label}", 1)
            if "error" in reply:
                rows[i]["error"] = reply["error"]
                worker.close()
                progress(target.label, config.repeat)
                continue
            workers[i] = worker
        for round_ in range(config.repeat):
            live = list(workers)
            shift = round_ % max(len(live), 1)
            for i in live[shift:] + live[:shift]:
                if i not in workers:
                    continue
                reply = workers[i].ask({"op": "repeat"})
                progress(f"{targets[i].label} {targets[i].mode} round {round_ + 1}", 1)
                if "error" in reply:
                    rows[i]["error"] = reply["error"]
                    workers.pop(i).close()
                    progress(targets[i].label, config.repeat - round_ - 1)
        for i, worker in list(workers.items()):
            rows[i].update(worker.ask({"op": "finish"}))
    finally:
        for worker in workers.values():
            worker.close()
    load_after = os.getloadavg()[0]
    for row in rows:
        row["loadavg_1m"] = [round(load_before, 2), round(load_after, 2)]
    return rows
