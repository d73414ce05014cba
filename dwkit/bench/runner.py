"""A benchmark run: prepare the model, its conversions and the audio, run every system in its
own worker process, then compare each with the transformers baseline of the same mode.

Reads top to bottom as the run does: resolve the model (or build the synthetic one), make
the audio, convert each requested format once (cached), measure the matmul floor, run every
(system, mode) in a fresh `python -m dwkit.bench.worker`, add ratios and the goal, write
JSON, markdown and PNG. The parent never imports torch or a runtime library.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.bench.config import BenchConfig, SystemSpec
from dwkit.bench.measure import (
    WORKER_ENV,
    EncoderShape,
    default_threads,
    encoder_flops,
    machine_info,
)
from dwkit.errors import ConfigError

Launcher = Callable[[dict[str, Any], float], dict[str, Any]]
SECONDS_PER_SENTENCE = 4.4  # the built-in espeak-ng sentences average ~4.4 s with their pauses
BASELINE_LABEL = "hf fp32"
# A single-shot row is run again when it got less than this share of its cores while the
# load average said other processes held them (a busy shared machine); the better one is kept.
STARVED_CPU_USE = 0.75
# The issue-9 goal, stated for the distil-large-v3.5 architecture on this class of machine.
GOAL_SPEEDUP_VS_FASTER_WHISPER = 2.5
GOAL_ENCODER_VS_BF16_FLOOR = 1.5
GOAL_REFERENCE = "faster-whisper int8"
GOAL_ARCHITECTURE = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 2, "num_mel_bins": 128}


@dataclass
class Target:
    """One row-to-be: a system at a precision on a model directory, in one mode."""

    system: str  # "dwkit", "faster-whisper", "transformers-pipeline"
    backend: str
    precision: str
    mode: str
    model_dir: Path | None
    error: str | None = None

    @property
    def label(self) -> str:
        if self.system == "dwkit":
            return f"{self.backend} {self.precision}"
        return f"{self.system} {self.precision}"


@dataclass
class Conversions:
    """Converted model directories by (format, precision), and what each conversion cost."""

    dirs: dict[tuple[str, str], Path] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


def run_bench(config: BenchConfig, progress: bool = True, launch: Launcher | None = None) -> dict[str, Any]:
    """Run the benchmark `config` describes; write and return the result."""
    from tqdm import tqdm

    from dwkit.bundled import default_cache_dir

    launch = launch or launch_worker
    cache = Path(config.cache_dir or default_cache_dir()).expanduser()
    threads = config.threads or default_threads()
    machine = machine_info()
    started = time.time()
    peers = available_peers(config)
    bar = tqdm(
        total=_job_count(config, peers),
        desc="dwkit bench",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    def advance(label: str, steps: int) -> None:
        bar.set_postfix_str(label, refresh=True)
        bar.update(steps)

    def step(label: str, job: dict[str, Any]) -> dict[str, Any]:
        bar.set_postfix_str(label, refresh=True)
        result = launch(job, config.timeout_s)
        bar.update(config.repeat + 1 if job["kind"] == "run" else 1)
        return result

    interleave = config.interleave and config.repeat > 1 and launch is launch_worker
    try:
        model_dir = resolve_model(config, cache, step)
        audio_files, reference = prepare_audio(config, cache)
        conversions = convert_all(config, model_dir, cache, peers, step)
        floor = step("matmul floor", {"kind": "floor", "threads": threads}) if config.floor else None
        rows = []
        targets = plan_targets(config, model_dir, conversions, peers)
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
        "worker_env": {
            **WORKER_ENV,
            "OMP_NUM_THREADS": str(threads),
            "why": "OMP_WAIT_POLICY=PASSIVE: on a shared 2-core machine OpenMP spin-waiting made torch "
            "15x slower; every worker (one process per system and mode) runs with it",
        },
        "definitions": DEFINITIONS,
        "model": model,
        "audio": audio_record(audio_files, reference),
        "floor": floor_record(floor, shape),
        "conversions": conversions.records,
        "results": rows,
    }
    result["goal"] = goal_status(result)
    from dwkit.bench.report import write_reports

    result["files"] = write_reports(result, Path(config.output), config.stem)
    return result


DEFINITIONS = {
    "rtfx": "total audio seconds / total transcription seconds (audio decoded beforehand; model load "
    "and one warm-up transcription of the first 10 s excluded); with repeat > 1 the systems of one mode "
    "are loaded side by side in their own workers and their repeats run round-robin (interleaved)",
    "latency": "seconds per file (one request), p50/p95 over every file of every repeat",
    "encoder_ms_per_window": "time inside backend.encode / 30 s windows encoded (batch rows)",
    "decoder_ms_per_token": "time inside backend.generate / tokens generated (end-of-text included; "
    "the prompt pass and the logit rules are in that time); for the pipeline, generate minus its encoder",
    "peak_rss_mb": "ru_maxrss of the worker process (one process per system and mode)",
    "cpu_utilisation": "the worker's CPU seconds / (wall seconds x threads) while transcribing; well "
    "under 1 means it waited for cores that other processes held (a busy shared machine)",
    "size_mb": "bytes of every file in the model directory the system loads",
    "vs_baseline": "ratios to transformers fp32 (dwkit hf backend) in the same mode and run: speedup = "
    "rtfx / baseline rtfx, encoder/decoder = baseline ms / ms, rss/size = value / baseline value",
}


# -- preparation ------------------------------------------------------------------------------


def resolve_model(config: BenchConfig, cache: Path, step: Callable[..., dict[str, Any]]) -> Path:
    """A transformers checkpoint directory: synthetic (built in a worker), bundled, local or hub."""
    if config.synthetic_model:
        from dwkit.synthetic import preset_dims

        preset_dims(config.synthetic_model)  # unknown preset: one-line error before any work
        result = step(
            f"building {config.synthetic_model}",
            {"kind": "synthetic_model", "preset": config.synthetic_model, "cache_dir": str(cache)},
        )
        if "error" in result:
            raise ConfigError(f"synthetic model {config.synthetic_model}: {result['error']}")
        return Path(result["model_dir"])
    from dwkit.bundled import BUNDLED, bundled_model
    from dwkit.converters.base import resolve_source

    model = str(config.model)
    if model in BUNDLED and not Path(model).is_dir():
        return bundled_model(model, cache)
    return resolve_source(model)


def prepare_audio(config: BenchConfig, cache: Path) -> tuple[list[Path], str | None]:
    """The audio files, and their spoken text when they were synthesised here."""
    if config.audio:
        return [Path(p) for p in config.audio], None
    path, text = synthetic_speech(float(config.synthetic_audio or 60.0), cache)
    return [path], text


def synthetic_speech(seconds: float, cache: Path) -> tuple[Path, str]:
    """About `seconds` of espeak-ng speech: the built-in sentences in order (cycled), whole."""
    from dwkit.speech import SENTENCES, cached_speech, espeak_available

    if not espeak_available():
        raise ConfigError(
            "--synthetic-audio needs espeak-ng (Debian/Ubuntu: apt-get install espeak-ng); or pass --audio FILES"
        )
    count = max(1, round(seconds / SECONDS_PER_SENTENCE))
    for _ in range(10):
        sentences = [SENTENCES[i % len(SENTENCES)] for i in range(count)]
        path = cached_speech(sentences, cache / "speech")
        duration = wav_seconds(path)
        if duration >= seconds - SECONDS_PER_SENTENCE / 2:
            break
        count += max(1, math.ceil((seconds - duration) / SECONDS_PER_SENTENCE))
    return path, " ".join(sentences)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


def available_peers(config: BenchConfig) -> list[str]:
    """Reference systems installed here: faster-whisper (sequential), transformers' pipeline (chunked)."""
    import importlib.util

    if not config.peers:
        return []
    peers = []
    if "sequential" in config.modes and importlib.util.find_spec("faster_whisper") is not None:
        peers.append("faster-whisper")
    if "chunked" in config.modes and importlib.util.find_spec("transformers") is not None:
        peers.append("transformers-pipeline")
    return peers


def faster_whisper_precisions(config: BenchConfig) -> list[str]:
    """int8 (the goal's reference) plus the compute type of every ct2 spec requested."""
    found = ["int8"]
    for spec in config.backends:
        if spec.backend == "ct2" and spec.precision not in found:
            found.append(spec.precision)
    return found


def conversion_for(spec: SystemSpec) -> tuple[str, str] | None:
    """(format, precision) to convert to for `spec`; None for transformers itself.

    CTranslate2 quantises when converting and again at load time: a compute type its
    converter knows is converted to directly (its size on disk is then the real one); any
    other (int16, ...) runs from the converter's default float16 directory.
    """
    if spec.backend == "hf":
        return None
    if spec.backend == "ct2":
        from dwkit.converters import FORMATS

        ct2 = FORMATS["ct2"]
        return ("ct2", spec.precision if spec.precision in ct2.precisions else ct2.default_precision)
    if spec.backend == "trt":
        return ("onnx", spec.precision)
    return (spec.backend, spec.precision)


def _wanted_conversions(config: BenchConfig, peers: list[str]) -> list[tuple[str, str]]:
    wanted = [c for c in (conversion_for(s) for s in config.backends) if c is not None]
    if "faster-whisper" in peers:
        wanted += [
            c for c in (conversion_for(SystemSpec("ct2", p)) for p in faster_whisper_precisions(config)) if c
        ]
    ordered: list[tuple[str, str]] = []
    for item in sorted(set(wanted), key=lambda c: (c[0], c[1] != "fp32", c[1])):  # onnx fp32 first: reused
        ordered.append(item)
    return ordered


def convert_all(
    config: BenchConfig, model_dir: Path, cache: Path, peers: list[str], step: Callable[..., dict[str, Any]]
) -> Conversions:
    """Convert the model once per (format, precision), cached under <cache>/bench/."""
    out = Conversions()
    key = source_key(model_dir)
    name = config.synthetic_model or Path(str(config.model)).name
    for fmt, precision in _wanted_conversions(config, peers):
        target = cache / "bench" / f"{name}-{key}-{fmt}-{precision}"
        record: dict[str, Any] = {"format": fmt, "precision": precision, "dir": str(target)}
        if (target / "dwkit.json").is_file():
            record["cached"] = True
            out.dirs[(fmt, precision)] = target
            out.records.append(record)
            continue
        options: dict[str, Any] = {}
        if fmt == "onnx":
            options["progress"] = False
            if precision != "fp32" and ("onnx", "fp32") in out.dirs:
                options["fp32_export"] = str(out.dirs[("onnx", "fp32")])
        job = {
            "kind": "convert",
            "source": str(model_dir),
            "out_dir": str(target),
            "format": fmt,
            "precision": precision,
            "validate": False,
            "options": options,
        }
        result = step(f"converting to {fmt} {precision}", job)
        record.update(result)
        record["cached"] = False
        out.records.append(record)
        if "error" in result:
            out.errors[(fmt, precision)] = result["error"]
        else:
            out.dirs[(fmt, precision)] = target
    return out


def source_key(model_dir: Path) -> str:
    """A cheap key for a checkpoint: its path and its weight files' sizes and modification times."""
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    for path in sorted(model_dir.glob("*")):
        if path.suffix in (".safetensors", ".bin", ".json"):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:10]


def plan_targets(
    config: BenchConfig, model_dir: Path, conversions: Conversions, peers: list[str]
) -> list[Target]:
    """Every (system, mode) to run, mode by mode, the baseline first in each."""
    targets = []
    for mode in config.modes:
        for spec in config.backends:
            converted = conversion_for(spec)
            if converted is None:
                targets.append(Target("dwkit", spec.backend, spec.precision, mode, model_dir))
            else:
                targets.append(
                    Target(
                        "dwkit",
                        spec.backend,
                        spec.precision,
                        mode,
                        conversions.dirs.get(converted),
                        error=_conversion_error(conversions, converted),
                    )
                )
        if mode == "sequential" and "faster-whisper" in peers:
            for precision in faster_whisper_precisions(config):
                converted = conversion_for(SystemSpec("ct2", precision))
                assert converted is not None
                targets.append(
                    Target(
                        "faster-whisper",
                        "ct2",
                        precision,
                        mode,
                        conversions.dirs.get(converted),
                        error=_conversion_error(conversions, converted),
                    )
                )
        if mode == "chunked" and "transformers-pipeline" in peers:
            targets.append(Target("transformers-pipeline", "hf", "fp32", mode, model_dir))
    return targets


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
    for key in ("fp32_gflops", "bf16_gflops"):
        best[key] = max(f[key] for f in found)
    best["measurements"] = found
    return best


def _conversion_error(conversions: Conversions, key: tuple[str, str]) -> str | None:
    if key in conversions.errors:
        return f"conversion to {key[0]} {key[1]} failed: {conversions.errors[key]}"
    return None


def _job_count(config: BenchConfig, peers: list[str]) -> int:
    runs = len(config.modes) * len(config.backends)
    if "faster-whisper" in peers:
        runs += len(faster_whisper_precisions(config))
    if "transformers-pipeline" in peers:
        runs += 1
    prepare = (
        int(bool(config.synthetic_model)) + len(_wanted_conversions(config, peers)) + 2 * int(config.floor)
    )
    return prepare + runs * (config.repeat + 1)  # a run: loading and warm-up, then each repeat


# -- running ----------------------------------------------------------------------------------


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
    return row


def _run_job(target: Target, config: BenchConfig, audio_files: list[Path], threads: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "system": target.system,
        "backend": target.backend,
        "precision": target.precision,
        "model_dir": str(target.model_dir),
        "mode": target.mode,
        "audio": [str(p) for p in audio_files],
        "repeat": config.repeat,
        "threads": threads,
        "batch_size": config.batch_size,
        "language": config.language,
        "tokens_per_window": config.tokens_per_window,
        "warmup": config.warmup,
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


# -- comparing --------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """`vs_baseline` on every row: ratios to the dwkit hf fp32 row of the same mode."""
    baselines = {r["mode"]: r for r in rows if r["system"] == "dwkit" and r["label"] == BASELINE_LABEL}
    for row in rows:
        base = baselines.get(row["mode"])
        if base is None or "error" in base or "error" in row:
            row["vs_baseline"] = None
            continue
        row["vs_baseline"] = {
            "speedup": _ratio(row.get("rtfx"), base.get("rtfx")),
            "encoder_speedup": _ratio(base.get("encoder_ms_per_window"), row.get("encoder_ms_per_window")),
            "decoder_speedup": _ratio(base.get("decoder_ms_per_token"), row.get("decoder_ms_per_token")),
            "peak_rss": _ratio(row.get("peak_rss_mb"), base.get("peak_rss_mb")),
            "size": _ratio(row.get("size_mb"), base.get("size_mb")),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def add_wer(rows: list[dict[str, Any]], reference: str | None, meaningful: bool = True) -> None:
    """WER against the spoken text and the baseline's text (same mode); the texts are dropped.

    Random weights transcribe nothing (`meaningful=False`): their WER would only measure how
    differently two precisions pick among noise, so none is recorded.
    """
    from dwkit.metrics import wer

    texts = {id(row): " ".join(row.pop("texts")) for row in rows if "texts" in row}
    if not meaningful:
        return
    baselines = {
        r["mode"]: texts[id(r)]
        for r in rows
        if r["system"] == "dwkit" and r["label"] == BASELINE_LABEL and id(r) in texts
    }
    for row in rows:
        if id(row) not in texts:
            continue
        if reference is not None:
            row["wer"] = round(wer(reference, texts[id(row)]), 4)
        if row["mode"] in baselines:
            row["wer_vs_baseline"] = round(wer(baselines[row["mode"]], texts[id(row)]), 4)


def model_record(config: BenchConfig, model_dir: Path, shape: EncoderShape) -> dict[str, Any]:
    from dwkit.manifest import read_manifest

    model_config = json.loads((model_dir / "config.json").read_text())
    keys = (
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "encoder_attention_heads",
        "encoder_ffn_dim",
        "num_mel_bins",
        "vocab_size",
        "max_source_positions",
        "max_target_positions",
    )
    made = (
        ((read_manifest(model_dir) or {}).get("source") or {}) if (model_dir / "dwkit.json").is_file() else {}
    )
    random = bool(config.synthetic_model) or made.get("kind") == "random"
    return {
        "source": config.synthetic_model or config.model,
        "synthetic": random,
        "weights": f"seeded random (dwkit.synthetic {made.get('preset', '')}, seed {made.get('seed', 0)})"
        if random
        else "trained",
        "dir": str(model_dir),
        "architecture": {k: model_config.get(k) for k in keys},
        "encoder_gflop_per_window": round(encoder_flops(shape) / 1e9, 1),
        "tokens_per_window": config.tokens_per_window,
    }


def audio_record(files: list[Path], reference: str | None) -> dict[str, Any]:
    seconds = []
    for path in files:
        try:
            seconds.append(round(wav_seconds(path), 2))
        except (wave.Error, EOFError):
            seconds.append(None)
    return {
        "files": [str(p) for p in files],
        "seconds": seconds,
        "total_seconds": round(sum(s for s in seconds if s), 2) if all(seconds) else None,
        "source": "espeak-ng speech of dwkit.speech.SENTENCES" if reference is not None else "given files",
    }


def floor_record(floor: dict[str, Any] | None, shape: EncoderShape) -> dict[str, Any] | None:
    if floor is None or "error" in floor:
        return floor
    flops = encoder_flops(shape)
    return {
        **floor,
        "encoder_gflop_per_window": round(flops / 1e9, 1),
        "encoder_floor_ms_bf16": round(flops / (floor["bf16_gflops"] * 1e9) * 1000, 1),
        "encoder_floor_ms_fp32": round(flops / (floor["fp32_gflops"] * 1e9) * 1000, 1),
    }


def goal_status(result: dict[str, Any]) -> dict[str, Any]:
    """Where the fastest dwkit backend stands against issue 9's goal, on the numbers of this run."""
    rows = [r for r in result["results"] if "error" not in r and r.get("rtfx")]
    dwkit_rows = [r for r in rows if r["system"] == "dwkit"]
    reference = [r for r in rows if r["system"] == "faster-whisper" and r["precision"] == "int8"]
    arch = result["model"]["architecture"]
    status: dict[str, Any] = {
        "statement": (
            "on this 2-core CPU, for the distil-large-v3.5 architecture on long-form audio, the fastest "
            f"dwkit backend should be at least {GOAL_SPEEDUP_VS_FASTER_WHISPER}x faster (RTFx) than "
            f"{GOAL_REFERENCE} on the same audio and settings, with encoder time per 30 s window within "
            f"{GOAL_ENCODER_VS_BF16_FLOOR}x of the bf16 floor"
        ),
        "architecture_matches": all(arch.get(k) == v for k, v in GOAL_ARCHITECTURE.items()),
    }
    if not dwkit_rows:
        status["met"] = None
        return status
    fastest = max(dwkit_rows, key=lambda r: r["rtfx"])
    status["fastest"] = {k: fastest.get(k) for k in ("label", "mode", "rtfx", "encoder_ms_per_window")}
    met: list[bool] = []
    if reference:
        ref = reference[0]
        speedup = fastest["rtfx"] / ref["rtfx"]
        status["reference"] = {k: ref.get(k) for k in ("label", "mode", "rtfx", "encoder_ms_per_window")}
        status["speedup_vs_reference"] = round(speedup, 3)
        status["speedup_gap"] = round(GOAL_SPEEDUP_VS_FASTER_WHISPER / speedup, 3)
        met.append(speedup >= GOAL_SPEEDUP_VS_FASTER_WHISPER)
    floor = result.get("floor") or {}
    encoders = [r for r in dwkit_rows if r.get("encoder_ms_per_window")]
    if floor.get("encoder_floor_ms_bf16") and fastest.get("encoder_ms_per_window"):
        ratio = fastest["encoder_ms_per_window"] / floor["encoder_floor_ms_bf16"]
        status["encoder_vs_bf16_floor"] = round(ratio, 3)
        best = min(encoders, key=lambda r: r["encoder_ms_per_window"])
        status["best_encoder"] = {
            "label": best["label"],
            "mode": best["mode"],
            "encoder_ms_per_window": best["encoder_ms_per_window"],
            "vs_bf16_floor": round(best["encoder_ms_per_window"] / floor["encoder_floor_ms_bf16"], 3),
        }
        met.append(ratio <= GOAL_ENCODER_VS_BF16_FLOOR)
    status["met"] = all(met) if len(met) == 2 else None
    return status
