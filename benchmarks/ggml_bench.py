"""dwkit's ggml backend (whisper.cpp) at f16 / q8_0 / q5_0 against transformers fp32, one run.

Every system transcribes the same espeak-ng recording (built-in sentences, ~2 min by default)
with the shared sequential long-form engine and the same settings (greedy, timestamps, the
temperature ladder, no conditioning on previous text) and the same CPU threads. For scale,
whisper.cpp's own `whisper_full` (pywhispercpp) runs the f16 file too: its decoding rules
differ from transformers', so its WER is shown but it is not a parity baseline. Runs are
interleaved (order rotates each round) so a noisy neighbour on a shared machine hurts every
system alike; the table shows medians. RTFx = audio seconds / transcription seconds (model
load excluded, as the Open ASR leaderboard does). JSON with every run goes to
benchmarks/results/.

    python benchmarks/ggml_bench.py --model tiny.en --runs 3 --threads 2
    python benchmarks/ggml_bench.py --model base --precisions f16,q8_0 --flash-attn off
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/conftest.py: spin-waiting on a shared CPU

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_SENTENCES = 27  # ~2 min of espeak-ng speech at 150 wpm with 0.8 s pauses
SEED = 0


def prepare(
    model: str, cache: Path, precisions: list[str], sentences: int
) -> tuple[Path, dict[str, Path], Path, str]:
    """The hf checkpoint, one ggml directory per precision, the recording and its text."""
    from dwkit.bundled import BUNDLED, bundled_model
    from dwkit.converters import convert
    from dwkit.speech import SENTENCES, cached_speech

    hf_dir = bundled_model(model, cache) if model in BUNDLED else Path(model)
    name = model if model in BUNDLED else hf_dir.name
    ggml_dirs = {}
    for precision in precisions:
        out = cache / "bench" / f"{name}-ggml-{precision}"
        if not (out / "dwkit.json").is_file():
            print(f"converting {name} to ggml {precision} ...", file=sys.stderr)
            convert(hf_dir, out, "ggml", precision, overwrite=True, validate=False)
        ggml_dirs[precision] = out
    chosen = list(SENTENCES[:sentences])
    return hf_dir, ggml_dirs, cached_speech(chosen, cache / "speech"), " ".join(chosen)


def dwkit_runner(
    model_dir: Path, backend: str, threads: int, options: dict | None = None
) -> tuple[Callable, float]:
    """A callable transcribing samples with the shared engine, and its load time."""
    from dwkit.decoding.options import DecodeOptions
    from dwkit.longform.options import LongformOptions
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.transcriber import Transcriber

    started = time.perf_counter()
    transcriber = Transcriber.from_model_dir(
        model_dir,
        backend,
        RuntimeConfig(threads=threads, options=dict(options or {})),
        # A fixed seed: a window that falls back to temperature > 0 samples the same way each run.
        LongformOptions(language="en", decode=DecodeOptions(seed=SEED)),
    )
    load_s = time.perf_counter() - started

    def run(samples):  # type: ignore[no-untyped-def]
        transcript = transcriber.transcribe(samples)
        return transcript.text, sum(1 for s in transcript.segments if s.temperature)

    return run, load_s


def whisper_cpp_runner(model_dir: Path, threads: int, flash_attn: bool) -> tuple[Callable, float]:
    from pywhispercpp.model import Model

    started = time.perf_counter()
    model = Model(
        str(model_dir / "ggml-model.bin"),
        redirect_whispercpp_logs_to=None,
        context_params={"flash_attn": flash_attn},
        n_threads=threads,
        print_progress=False,
        print_realtime=False,
        language="en",
    )
    load_s = time.perf_counter() - started
    return (lambda samples: (" ".join(s.text for s in model.transcribe(samples)), None)), load_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="tiny.en", help="bundled name (tiny.en, base) or a transformers dir"
    )
    parser.add_argument("--precisions", default="f16,q8_0,q5_0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES)
    parser.add_argument(
        "--flash-attn", choices=("on", "off"), default="on", help="whisper.cpp's default is on"
    )
    parser.add_argument("--no-native", action="store_true", help="skip pywhispercpp's own whisper_full")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from dwkit.audio import load_audio
    from dwkit.bundled import default_cache_dir
    from dwkit.metrics import wer
    from dwkit.runtimes.whispercpp_ctypes import library

    cache = Path(os.environ.get("DWKIT_CACHE") or default_cache_dir())
    precisions = [p for p in args.precisions.split(",") if p]
    hf_dir, ggml_dirs, audio_path, reference = prepare(args.model, cache, precisions, args.sentences)
    samples = load_audio(audio_path)
    audio_s = len(samples) / 16000
    flash = args.flash_attn == "on"

    systems: dict[str, tuple[Callable, float]] = {"hf fp32": dwkit_runner(hf_dir, "hf", args.threads)}
    for precision, path in ggml_dirs.items():
        systems[f"ggml {precision}"] = dwkit_runner(path, "ggml", args.threads, {"flash_attn": flash})
    if not args.no_native and "f16" in ggml_dirs:
        systems["whisper.cpp native f16"] = whisper_cpp_runner(ggml_dirs["f16"], args.threads, flash)

    warm = samples[: 16000 * 5]
    for name, (run, _) in systems.items():  # first-call costs (allocation, thread pools) excluded
        print(f"warming up {name} ...", file=sys.stderr)
        run(warm)
    names = list(systems)
    times: dict[str, list[float]] = {n: [] for n in names}
    texts: dict[str, str] = {}
    fallbacks: dict[str, int | None] = {}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.runs):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            started = time.perf_counter()
            texts[name], fallbacks[name] = systems[name][0](samples)
            times[name].append(time.perf_counter() - started)
            print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        loads.append(os.getloadavg()[0])

    base = statistics.median(times["hf fp32"])
    rows = []
    for name in names:
        median = statistics.median(times[name])
        size = None
        if name.startswith("ggml") or name.startswith("whisper.cpp"):
            size = (ggml_dirs[name.split()[-1]] / "ggml-model.bin").stat().st_size / 2**20
        rows.append(
            {
                "system": name,
                "median_s": round(median, 2),
                "runs_s": [round(t, 2) for t in times[name]],
                "rtfx": round(audio_s / median, 2),
                "speed_vs_hf_fp32": round(base / median, 2),
                "load_s": round(systems[name][1], 2),
                "wer": round(wer(reference, texts[name]), 4),
                "same_text_as_hf": texts[name].strip() == texts["hf fp32"].strip(),
                "model_mb": round(size, 1) if size else None,
                "fallback_segments": fallbacks[name],
                "text": texts[name],
            }
        )
    result = {
        "benchmark": "ggml_bench",
        "model": args.model,
        "audio_seconds": round(audio_s, 1),
        "threads": args.threads,
        "flash_attn": flash,
        "runs": args.runs,
        "mode": "sequential, greedy, timestamps, language en",
        "whisper_cpp": library().version,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average_during": loads,
        },
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"ggml-{Path(args.model).name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def markdown(result: dict) -> str:
    lines = [
        f"{result['model']}, {result['audio_seconds']} s of espeak-ng speech, {result['threads']} threads, "
        f"flash attention {'on' if result['flash_attn'] else 'off'}, whisper.cpp {result['whisper_cpp']}, "
        f"median of {result['runs']} run(s)",
        "",
        "| system | median s | RTFx | vs hf fp32 | WER | same text as hf | fallback windows | load s | model MB |",
        "|---|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        size = f"{r['model_mb']:.1f}" if r["model_mb"] else "-"
        same = "yes" if r["same_text_as_hf"] else "no"
        fallback = "-" if r["fallback_segments"] is None else r["fallback_segments"]
        lines.append(
            f"| {r['system']} | {r['median_s']:.1f} | {r['rtfx']:.1f} | {r['speed_vs_hf_fp32']:.2f}x | "
            f"{r['wer']:.3f} | {same} | {fallback} | {r['load_s']:.2f} | {size} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
