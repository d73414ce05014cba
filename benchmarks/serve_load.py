"""Load test of `dwkit serve`: N concurrent clients, a fixed number of requests, on loopback.

Starts `dwkit serve` (a subprocess, so the clients do not share its interpreter) for a model
and config, sends each clip once on its own to get its single-request transcript, then for
every concurrency N runs a bounded asyncio loop: N workers send `--requests` transcription
requests in total through the real `openai` client, cycling over the clips, and the loop
stops once all are answered. Every answer must equal the single-request transcript of its
clip; any error or mismatch is counted (and makes the exit status 1). Each N runs twice:
plain, and with every `--kill-every`-th client killed mid-request (its request cancelled
after half the single-request latency, which closes its connection), after which the
server must hold no slot and still answer.

Reported per run: throughput (audio seconds transcribed per wall second), p50/p95 latency
of the answered requests, errors, mismatches, killed, the server's batch sizes, and the load
average before and after (the machine is shared). The batching gain is the throughput at
the highest concurrency over that at 1.

    python benchmarks/serve_load.py                                  # bundled tiny.en, hf, N = 1 and 8
    python benchmarks/serve_load.py --config prod.toml --concurrency 1,4,16 --requests 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dwkit.bench.measure import machine_info

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/conftest.py: spin-waiting on a shared CPU

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODEL_NAME = "served"
CLIP_SENTENCES = (0, 1, 2, 3, 4, 5, 6, 7)


@dataclass
class Run:
    concurrency: int
    kill_every: int  # 0: no client is killed
    requests: int
    answered: int = 0
    killed: int = 0
    errors: int = 0
    mismatches: int = 0
    wall_s: float = 0.0
    audio_s: float = 0.0
    throughput: float = 0.0  # audio seconds answered per wall second
    p50_s: float = 0.0
    p95_s: float = 0.0
    mean_batch: float = 0.0  # requests per engine call, from the server's metrics
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    slots_held_after: float = 0.0
    error_samples: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="tiny.en", help="a bundled name (tiny.en, base) or a model directory"
    )
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--config", type=Path, help="a dwkit config file instead of --model/--backend")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=32, help="requests per run")
    parser.add_argument(
        "--kill-every", type=int, default=4, help="in the kill runs, every Nth client is killed"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from dwkit.serve.background import free_port
    from dwkit.speech import SENTENCES, cached_speech

    cache = Path(os.environ.get("DWKIT_CACHE", REPO / ".cache" / "dwkit")).expanduser()
    clips = [cached_speech([SENTENCES[i]], cache / "speech") for i in CLIP_SENTENCES]
    config = args.config or _write_config(args, cache)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "dwkit.cli.main", "serve", "--config", str(config), "--port", str(port)]
    env = {**os.environ, "DWKIT_SERVE__MODEL_NAME": MODEL_NAME, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, server)
        runs, single = asyncio.run(_all_runs(url, clips, args))
    finally:
        server.terminate()
        server.wait(timeout=60)
    report = _report(args, config, runs, single, clips)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = f"serve_load-{Path(args.model).name if not args.config else args.config.stem}"
    (args.output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / f"{stem}.md").write_text(_markdown(report))
    print(_markdown(report))
    failed = sum(r.errors + r.mismatches + (r.slots_held_after > 0) for r in runs)
    return 1 if failed else 0


def _write_config(args: argparse.Namespace, cache: Path) -> Path:
    from dwkit.bundled import bundled_model

    model = Path(args.model) if Path(args.model).is_dir() else bundled_model(args.model, cache)
    path = cache / "serve_load" / f"{Path(args.model).name}-{args.backend}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'model = "{model}"\nbackend = "{args.backend}"\nthreads = {args.threads}\n'
        "[serve]\nmax_batch_size = 8\nmax_concurrent = 256\n"
    )
    return path


def _wait_ready(url: str, server: subprocess.Popen, limit_s: float = 300) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dwkit serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ready") as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"dwkit serve was not ready within {limit_s:g} s")


async def _all_runs(
    url: str, clips: list[Path], args: argparse.Namespace
) -> tuple[list[Run], dict[str, Any]]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
    audio = {clip: clip.read_bytes() for clip in clips}
    seconds = {clip: _duration(clip) for clip in clips}
    expected, latencies = {}, []
    for clip in clips:  # the single-request transcripts, one request at a time
        started = time.perf_counter()
        expected[clip] = await _ask(client, audio[clip])
        latencies.append(time.perf_counter() - started)
    kill_after = statistics.median(latencies) / 2
    runs = []
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        for kill_every in (0, args.kill_every):
            run = Run(concurrency, kill_every, args.requests)
            await _run(client, url, run, clips, audio, seconds, expected, kill_after)
            runs.append(run)
            print(
                f"N={concurrency} kill_every={kill_every}: {run.throughput:.2f} audio s/s, p50 {run.p50_s:.2f} s, "
                f"p95 {run.p95_s:.2f} s, errors {run.errors}, mismatches {run.mismatches}, killed {run.killed}",
                file=sys.stderr,
            )
    single = {"kill_after_s": kill_after, "latency_s": latencies, "clip_s": [seconds[c] for c in clips]}
    return runs, single


async def _run(client, url, run, clips, audio, seconds, expected, kill_after) -> None:  # type: ignore[no-untyped-def]
    """`run.requests` requests from `run.concurrency` workers; every `kill_every`-th is killed."""
    batches_before = _batch_totals(url)
    run.load_before = os.getloadavg()
    latencies: list[float] = []
    counter = iter(range(run.requests))

    async def worker() -> None:
        for i in counter:
            clip = clips[i % len(clips)]
            kill = run.kill_every and (i + 1) % run.kill_every == 0
            started = time.perf_counter()
            try:
                if kill:
                    try:
                        await asyncio.wait_for(_ask(client, audio[clip]), timeout=kill_after)
                    except asyncio.TimeoutError:
                        run.killed += 1
                        continue
                text = await _ask(client, audio[clip])
            except Exception as exc:  # counted and shown, never hidden
                run.errors += 1
                run.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append(time.perf_counter() - started)
            run.answered += 1
            run.audio_s += seconds[clip]
            run.mismatches += text != expected[clip]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(run.concurrency)))
    run.wall_s = time.perf_counter() - started
    run.load_after = os.getloadavg()
    run.throughput = run.audio_s / run.wall_s
    if latencies:
        cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
        run.p50_s, run.p95_s = statistics.median(latencies), cuts[18]
    count, total = (a - b for a, b in zip(_batch_totals(url), batches_before))
    run.mean_batch = total / count if count else 0.0
    # Killed requests must have given their slots back (the decode itself may still finish).
    deadline = time.monotonic() + 60
    while (held := _metric(url, "dwkit_serve_in_flight_requests")) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    run.slots_held_after = held


async def _ask(client, data: bytes) -> str:  # type: ignore[no-untyped-def]
    return await client.audio.transcriptions.create(
        file=("clip.wav", data), model=MODEL_NAME, response_format="text"
    )


def _duration(path: Path) -> float:
    from dwkit.audio import SAMPLE_RATE, load_audio

    return len(load_audio(path)) / SAMPLE_RATE


def _metric(url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics") as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def _batch_totals(url: str) -> tuple[float, float]:
    return _metric(url, "dwkit_serve_batch_size_count"), _metric(url, "dwkit_serve_batch_size_sum")


def _report(args, config: Path, runs: list[Run], single: dict[str, Any], clips: list[Path]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    plain = {r.concurrency: r for r in runs if not r.kill_every}
    low, high = min(plain), max(plain)
    return {
        "config": config.read_text(),
        "requests_per_run": args.requests,
        "clips": len(clips),
        "single_request": single,
        "runs": [asdict(r) for r in runs],
        "batching_gain": plain[high].throughput / plain[low].throughput if plain[low].throughput else None,
        "gain_between": [low, high],
        "machine": {**machine_info(), "threads": args.threads},
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# dwkit serve load test ({report['when']})",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads; {report['requests_per_run']} "
        f"requests per run over {report['clips']} clips "
        f"({min(report['single_request']['clip_s']):.1f}-{max(report['single_request']['clip_s']):.1f} s); "
        f"killed clients cancel after {report['single_request']['kill_after_s']:.2f} s.",
        "",
        "| clients | killed every | answered | killed | errors | mismatches | audio s/s | p50 s | p95 s "
        "| mean batch | slots held after | load avg before -> after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["runs"]:
        load = f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}"
        lines.append(
            f"| {r['concurrency']} | {r['kill_every'] or '-'} | {r['answered']} | {r['killed']} | {r['errors']} "
            f"| {r['mismatches']} | {r['throughput']:.2f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} "
            f"| {r['mean_batch']:.2f} | {r['slots_held_after']:g} | {load} |"
        )
    low, high = report["gain_between"]
    if report["batching_gain"] is not None:
        lines += [
            "",
            f"Batching gain (throughput at {high} clients / at {low}): {report['batching_gain']:.2f}x",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
