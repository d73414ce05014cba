"""`dwkit batch` throughput with 1 and 2 actors, and its overhead over `dwkit transcribe`.

Every system is a fresh command-line process on the same espeak-ng corpus and model (the
bundled real tiny.en, hf backend, sequential, greedy), timed wall to wall: that includes
Python and library imports, Ray's start (batch) and the model load(s). Each runs at two
corpus sizes, so wall = fixed + per_file x files separates the fixed cost (Ray, actors, model)
from the cost per file; the overhead of `dwkit batch` is its fixed and per-file cost minus
`dwkit transcribe`'s (one process, the same files in one transcribe_batch call).

    python benchmarks/batch_bench.py --sizes 6 18 --repeat 2 --output benchmarks/results

On a shared machine the systems are interleaved, `--repeat` times, and each (system, size)
keeps its best wall time (every attempt is in the JSON, with the load average around it).

Threads: transcribe and the 1-actor job use both cores (threads = 2); the 2-actor job gives
each actor one core (cpus_per_actor = 1, threads = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dwkit.bench.measure import machine_info
from dwkit.bundled import bundled_model
from dwkit.speech import SENTENCES, cached_speech

CORES = 2
SYSTEMS = {
    "transcribe (1 process)": None,
    "batch, 1 actor x 2 CPUs": {"actors": 1, "cpus_per_actor": 2, "threads": 2},
    "batch, 2 actors x 1 CPU": {"actors": 2, "cpus_per_actor": 1, "threads": 1},
}


def corpus(n: int, cache: Path, folder: Path) -> tuple[list[Path], float]:
    """`n` files of two sentences each (~6-8 s), distinct files, and their total seconds."""
    import wave

    folder.mkdir(parents=True, exist_ok=True)
    files, seconds = [], 0.0
    for i in range(n):
        pair = [SENTENCES[(2 * i) % len(SENTENCES)], SENTENCES[(2 * i + 1) % len(SENTENCES)]]
        target = folder / f"f{i:03d}.wav"
        shutil.copy(cached_speech(pair, cache / "speech"), target)
        with wave.open(str(target)) as handle:
            seconds += handle.getnframes() / handle.getframerate()
        files.append(target)
    return files, seconds


def config_file(path: Path, model: Path, settings: dict | None) -> Path:
    threads = settings["threads"] if settings else CORES
    lines = [f'model = "{model}"', 'backend = "hf"', f"threads = {threads}", ""]
    if settings:
        lines += [
            "[batch]",
            f"actors = {settings['actors']}",
            f"cpus_per_actor = {settings['cpus_per_actor']}",
            "files_per_batch = 4",
            "shard_files = 8",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(system: str, settings: dict | None, files: list[Path], work: Path, model: Path) -> float:
    config = config_file(work / "config.toml", model, settings)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    dwkit = [sys.executable, "-m", "dwkit.cli.main"]
    if settings is None:
        command = [*dwkit, "transcribe", "--config", str(config), *map(str, files), "-o", str(out)]
    else:
        command = [*dwkit, "batch", "--config", str(config), "--input", str(files[0].parent)]
        command += ["--output", str(out), "--no-progress"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{system} failed:\n{result.stderr}")
    return wall


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed s, s per file) through the two corpus sizes."""
    (n1, t1), (n2, t2) = points[0], points[-1]
    per_file = (t2 - t1) / (n2 - n1)
    return t1 - per_file * n1, per_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[6, 18], help="two corpus sizes (files)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the best wall is kept")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cache = Path(os.environ.get("DWKIT_CACHE", Path.home() / ".cache" / "dwkit"))
    model = bundled_model("tiny.en", cache)
    attempts: dict[tuple[str, int], list[dict]] = {}
    audio: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="dwkit-batch-bench-") as tmp:
        corpora = {}
        for size in args.sizes:
            corpora[size], audio[size] = corpus(size, cache, Path(tmp) / f"corpus{size}")
        for round_ in range(args.repeat):
            for size in args.sizes:
                for name, settings in SYSTEMS.items():
                    load_before = os.getloadavg()[0]
                    wall = run(name, settings, corpora[size], Path(tmp), model)
                    attempts.setdefault((name, size), []).append(
                        {
                            "wall_s": round(wall, 2),
                            "load_avg_before": round(load_before, 2),
                            "load_avg_after": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(f"round {round_ + 1}: {name:26s} {size:3d} files  {wall:6.1f} s", file=sys.stderr)
    rows: dict[str, dict] = {name: {"runs": []} for name in SYSTEMS}
    for (name, size), tries in attempts.items():
        best = min(tries, key=lambda t: t["wall_s"])
        rows[name]["runs"].append(
            {
                "files": size,
                "audio_s": round(audio[size], 2),
                "wall_s": best["wall_s"],
                "files_per_s": round(size / best["wall_s"], 3),
                "rtfx": round(audio[size] / best["wall_s"], 2),
                "load_avg_before": best["load_avg_before"],
                "load_avg_after": best["load_avg_after"],
                "attempts": tries,
            }
        )
    base_fixed, base_per_file = fit(
        [(r["files"], r["wall_s"]) for r in rows["transcribe (1 process)"]["runs"]]
    )
    for row in rows.values():
        fixed, per_file = fit([(r["files"], r["wall_s"]) for r in row["runs"]])
        row.update(
            fixed_s=round(fixed, 2),
            per_file_s=round(per_file, 3),
            fixed_overhead_s=round(fixed - base_fixed, 2),
            per_file_overhead_s=round(per_file - base_per_file, 3),
        )
    report = {
        "what": __doc__.strip().splitlines()[0],
        "machine": machine_info(),
        "model": "tiny.en (bundled, real weights), hf fp32, sequential, greedy",
        "systems": rows,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "batch_tiny_en.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "batch_tiny_en.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        f"# {report['what']}",
        "",
        f"{report['model']}; {report['machine']['cpu']}, {report['machine']['cores']} cores (shared, noisy).",
        "",
        "| system | files | audio s | wall s | files/s | RTFx | load avg | fixed s | s/file | overhead fixed s | overhead s/file |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["systems"].items():
        for i, r in enumerate(row["runs"]):
            fitted = (
                [row["fixed_s"], row["per_file_s"], row["fixed_overhead_s"], row["per_file_overhead_s"]]
                if i == 0
                else [""] * 4
            )
            cells = [
                name if i == 0 else "",
                r["files"],
                r["audio_s"],
                r["wall_s"],
                r["files_per_s"],
                r["rtfx"],
            ]
            cells += [f"{r['load_avg_before']}-{r['load_avg_after']}", *fitted]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
