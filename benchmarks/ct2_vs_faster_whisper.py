"""dwkit's ct2 backend under the shared long-form engine vs faster-whisper on the same model.

Both run the same CTranslate2 directory (converted here from a bundled real model) on the
same espeak-ng recording (the 35 built-in sentences, ~2.6 min), with the same settings:
greedy (beam 1), timestamps on, no VAD, no conditioning on previous text, the same
temperature ladder, log-prob and no-speech thresholds, and the same CPU threads. Each
library keeps its own compression-ratio measure at its own default (dwkit: transformers'
ratio on token ids, 1.35; faster-whisper: OpenAI's ratio on text, 2.4), since neither takes
the other's. Runs are interleaved (the order rotates each round) so a noisy neighbour hurts
every system alike; the table shows the median, the spread, RTFx (audio seconds over
transcription seconds, model load excluded) and ratios against faster-whisper and against
transformers fp32 under the same engine. The JSON (every run, versions, machine load) goes
to benchmarks/results/.

    python benchmarks/ct2_vs_faster_whisper.py --model tiny.en --runs 5 --threads 2
    python benchmarks/ct2_vs_faster_whisper.py --model tiny.en --profile   # where dwkit's time goes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/conftest.py: spin-waiting on a shared CPU

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6


def prepare(model: str, cache: Path, precisions: list[str]) -> tuple[Path, dict[str, Path], Path]:
    """The hf checkpoint, one ct2 directory per precision, and the recording."""
    from dwkit.bundled import bundled_model
    from dwkit.converters import convert
    from dwkit.speech import SENTENCES, cached_speech

    hf_dir = bundled_model(model, cache)
    ct2_dirs = {}
    for precision in precisions:
        out = cache / "bench" / f"{model}-ct2-{precision}"
        if not (out / "dwkit.json").is_file():
            print(f"converting {model} to ct2 {precision} ...", file=sys.stderr)
            convert(hf_dir, out, "ct2", precision, overwrite=True)
        ct2_dirs[precision] = out
    audio = cached_speech(list(SENTENCES), cache / "speech")
    return hf_dir, ct2_dirs, audio


class TimedWhisper:
    """Wraps a `ctranslate2.models.Whisper` and adds up the seconds spent inside its calls.

    Both systems drive the same CTranslate2 calls, so time outside them is each wrapper's own
    overhead (features, prompts, segments, Python): the number to compare when the machine is
    noisy and whole-run medians wander.
    """

    def __init__(self, model: Any):
        self._model = model
        self.inside = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def _timed(self, name: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self._model, name)(*args, **kwargs)
        finally:
            self.inside += time.perf_counter() - started

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("encode", *args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("generate", *args, **kwargs)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("detect_language", *args, **kwargs)


def dwkit_runner(model_dir: Path, backend: str, threads: int, precision: str | None = None) -> Callable:
    from dwkit.longform.options import LongformOptions
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.transcriber import Transcriber

    options = LongformOptions(
        mode="sequential",
        language="en",
        temperatures=TEMPERATURES,
        logprob_threshold=LOGPROB_THRESHOLD,
        no_speech_threshold=NO_SPEECH_THRESHOLD,
        condition_on_prev_tokens=False,
    )
    runtime = RuntimeConfig(threads=threads, inter_threads=1, precision=precision)
    transcriber = Transcriber.from_model_dir(model_dir, backend=backend, runtime=runtime, options=options)
    timed = None
    if backend == "ct2":
        timed = transcriber.backend.model = TimedWhisper(transcriber.backend.model)  # type: ignore[attr-defined]

    def run(samples):  # type: ignore[no-untyped-def]
        return transcriber.transcribe(samples).text

    run.timed = timed  # type: ignore[attr-defined]
    return run


def faster_whisper_runner(model_dir: Path, threads: int) -> Callable:
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="default", cpu_threads=threads, num_workers=1
    )
    timed = model.model = TimedWhisper(model.model)

    def run(samples):  # type: ignore[no-untyped-def]
        segments, _ = model.transcribe(
            samples,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=list(TEMPERATURES),
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=False,
            word_timestamps=False,
        )
        return "".join(s.text for s in segments)

    run.timed = timed  # type: ignore[attr-defined]
    return run


def measure(systems: dict[str, Callable], samples, runs: int) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Interleaved timed runs after one untimed warm-up each; the order rotates every round."""
    names = list(systems)
    texts = {name: systems[name](samples) for name in names}  # warm-up (allocations, caches)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    outside: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            timed = getattr(systems[name], "timed", None)
            if timed is not None:
                timed.inside = 0.0
            started, cpu_started = time.perf_counter(), time.process_time()
            systems[name](samples)
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
            if timed is not None:
                outside[name].append(times[name][-1] - timed.inside)
        print(
            f"round {round_ + 1}/{runs}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names),
            file=sys.stderr,
        )
    return {
        name: {
            "seconds": times[name],
            "cpu_seconds": cpu[name],
            "outside_ct2_seconds": outside[name] or None,
            "text": texts[name],
        }
        for name in names
    }


def summarise(results: dict[str, dict], audio_s: float) -> dict[str, dict]:
    for entry in results.values():
        seconds = entry["seconds"]
        entry["median_s"] = statistics.median(seconds)
        entry["min_s"], entry["max_s"] = min(seconds), max(seconds)
        entry["rtfx"] = audio_s / entry["median_s"]
        entry["cpu_median_s"] = statistics.median(entry["cpu_seconds"])
        if entry["outside_ct2_seconds"]:
            entry["outside_ct2_median_s"] = statistics.median(entry["outside_ct2_seconds"])
    return results


def markdown(results: dict[str, dict], audio_s: float, model: str, threads: int) -> str:
    from dwkit.metrics import wer

    lines = [
        f"{model}, {audio_s:.1f} s of espeak-ng speech, greedy sequential long-form, {threads} CPU threads; "
        f"median of {len(next(iter(results.values()))['seconds'])} interleaved runs",
        "",
        "| system | median s | min–max s | RTFx | vs faster-whisper (same precision) | vs hf fp32 "
        "| CPU s (median) | CPU vs faster-whisper | outside CTranslate2 s | WER vs faster-whisper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    hf = results.get("dwkit hf fp32")
    for name, entry in results.items():
        precision = name.rsplit(" ", 1)[-1]
        fw = results.get(f"faster-whisper {precision}")
        mine = fw and not name.startswith("faster")
        vs_fw = f"{fw['median_s'] / entry['median_s']:.3f}x" if mine else ""
        cpu_vs_fw = f"{fw['cpu_median_s'] / entry['cpu_median_s']:.3f}x" if mine else ""
        vs_hf = f"{hf['median_s'] / entry['median_s']:.2f}x" if hf else ""
        text_wer = f"{wer(fw['text'], entry['text']):.3f}" if fw and fw is not entry else ""
        outside = (
            f"{entry['outside_ct2_median_s']:.2f}" if entry.get("outside_ct2_median_s") is not None else ""
        )
        lines.append(
            f"| {name} | {entry['median_s']:.2f} | {entry['min_s']:.2f}–{entry['max_s']:.2f} | "
            f"{entry['rtfx']:.1f} | {vs_fw} | {vs_hf} | {entry['cpu_median_s']:.2f} | {cpu_vs_fw} | "
            f"{outside} | {text_wer} |"
        )
    lines.append("")
    lines.append(
        "vs faster-whisper > 1 means dwkit is faster; vs hf fp32 is the speed-up over transformers fp32 "
        "(same engine). CPU s is the process CPU time of a run (all threads): on a shared machine it "
        "moves far less than wall time. Outside CTranslate2 = run time minus time inside "
        "Whisper.encode/generate (features, prompts, segments, Python)."
    )
    return "\n".join(lines)


def profile(run: Callable, samples) -> None:  # type: ignore[no-untyped-def]
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run(samples)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["float32", "int8"])
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers fp32 baseline")
    parser.add_argument("--profile", action="store_true", help="cProfile one dwkit ct2 run and exit")
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("DWKIT_CACHE", REPO / ".cache" / "dwkit"))
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from dwkit.audio import load_audio

    hf_dir, ct2_dirs, audio = prepare(args.model, args.cache, args.precisions)
    samples = load_audio(audio)
    audio_s = len(samples) / 16000
    if args.profile:
        profile(dwkit_runner(ct2_dirs[args.precisions[0]], "ct2", args.threads), samples)
        return 0

    systems: dict[str, Callable] = {}
    for precision, model_dir in ct2_dirs.items():
        systems[f"dwkit ct2 {precision}"] = dwkit_runner(model_dir, "ct2", args.threads)
        systems[f"faster-whisper {precision}"] = faster_whisper_runner(model_dir, args.threads)
    if not args.no_hf:
        systems["dwkit hf fp32"] = dwkit_runner(hf_dir, "hf", args.threads, "fp32")
    load_before = os.getloadavg()
    results = summarise(measure(systems, samples, args.runs), audio_s)
    table = markdown(results, audio_s, args.model, args.threads)
    print(table)

    from dwkit.converters.base import library_versions

    payload = {
        "benchmark": "ct2_vs_faster_whisper",
        "model": args.model,
        "audio": {"path": str(audio), "seconds": audio_s},
        "settings": {
            "mode": "sequential",
            "beam_size": 1,
            "temperatures": TEMPERATURES,
            "logprob_threshold": LOGPROB_THRESHOLD,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "compression_ratio_threshold": {"dwkit (token ids)": 1.35, "faster-whisper (text)": 2.4},
            "condition_on_previous_text": False,
            "vad": False,
            "threads": args.threads,
            "runs": args.runs,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": library_versions("ctranslate2", "faster-whisper", "transformers", "torch"),
        "results": results,
        "table": table,
    }
    out = args.out or RESULTS / f"ct2_vs_faster_whisper-{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
