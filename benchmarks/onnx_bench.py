"""dwkit's onnx backend (onnxruntime) at fp32 and int8 against transformers fp32, one run.

Every system transcribes the same espeak-ng recording (built-in sentences, ~2 min by default)
with the shared sequential long-form engine and the same settings (greedy, timestamps, the
temperature ladder, language en) and the same CPU threads. Runs are interleaved (the order
rotates each round) so a noisy neighbour on a shared machine hurts every system alike; the
table shows medians. RTFx = audio seconds / transcription seconds (model load excluded, as
the Open ASR leaderboard does).

Per system it also measures, on the recording's first 30 s window (systems interleaved too):
- encoder ms per 30 s window (batch 1, median of --reps);
- decoder ms per token (64 tokens, end-of-text suppressed): one decoder step inside the
  backend (`step`), and per generated token as the shared greedy decoder sees it (the step plus the shared logit rules,
  log-softmax and argmax in numpy);
- for onnx, the share of per-token time spent in Python outside onnxruntime: time inside
  the decoder-step `run_with_iobinding` against the backend's `step` (backend overhead)
  and against the whole per-token time (everything that is not onnxruntime).
JSON with every run goes to benchmarks/results/.

    python benchmarks/onnx_bench.py --model tiny.en --runs 3 --threads 2
    python benchmarks/onnx_bench.py --model base --precisions fp32,int8,fp16
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
DEFAULT_SENTENCES = 27  # ~2 min of espeak-ng speech at 150 wpm with 0.8 s pauses
DECODE_TOKENS = 64


def prepare(
    model: str, cache: Path, precisions: list[str], sentences: int
) -> tuple[Path, dict[str, Path], Path, str]:
    """The hf checkpoint, one onnx directory per precision, the recording and its text."""
    from dwkit.bundled import BUNDLED, bundled_model
    from dwkit.converters import convert
    from dwkit.speech import SENTENCES, cached_speech

    hf_dir = bundled_model(model, cache) if model in BUNDLED else Path(model)
    name = model if model in BUNDLED else hf_dir.name
    onnx_dirs: dict[str, Path] = {}
    for precision in ["fp32", *[p for p in precisions if p != "fp32"]]:
        out = cache / "bench" / f"{name}-onnx-{precision}"
        if not (out / "dwkit.json").is_file():
            print(f"converting {name} to onnx {precision} ...", file=sys.stderr)
            reuse = {"fp32_export": onnx_dirs["fp32"]} if precision != "fp32" else {}
            convert(hf_dir, out, "onnx", precision, overwrite=True, validate=precision == "fp32", **reuse)
        onnx_dirs[precision] = out
    onnx_dirs = {p: d for p, d in onnx_dirs.items() if p in precisions}
    chosen = list(SENTENCES[:sentences])
    return hf_dir, onnx_dirs, cached_speech(chosen, cache / "speech"), " ".join(chosen)


def dwkit_transcriber(model_dir: Path, backend: str, threads: int) -> tuple[Any, float]:
    from dwkit.longform.options import LongformOptions
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.transcriber import Transcriber

    started = time.perf_counter()
    transcriber = Transcriber.from_model_dir(
        model_dir, backend, RuntimeConfig(threads=threads), LongformOptions(language="en")
    )
    return transcriber, time.perf_counter() - started


class _Timed:
    """Wraps a callable and records each call's wall time."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.calls: list[tuple[float, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.calls.append((time.perf_counter() - started, args[0] if args else None))
        return out


class Probe:
    """Encoder ms per window, decoder ms per token and (onnx) the Python share, one sample per
    call to `sample()`, so that main() can interleave systems as it does for transcription."""

    def __init__(self, backend: Any, mel: Any):
        from dwkit.decoding.options import DecodeOptions

        self.backend = backend
        self.mel = mel
        info = backend.info
        self.prompt = [info.sot]
        if info.multilingual and info.transcribe is not None:
            self.prompt += [info.lang_to_id["<|en|>"], info.transcribe]
        self.prompt.append(info.no_timestamps)
        # End-of-text suppressed: every system decodes exactly DECODE_TOKENS tokens, even where a
        # near-tie (int8) would stop one of them early.
        suppress = [*info.suppress_tokens, info.eot]
        self.opts = DecodeOptions(
            without_timestamps=True, max_new_tokens=DECODE_TOKENS, suppress_tokens=suppress
        )
        self.samples: dict[str, list[float]] = {"encode": [], "token": [], "step": [], "ort": []}
        self.tokens = 0
        self.sample(keep=False)  # first calls allocate

    def sample(self, keep: bool = True) -> None:
        import numpy as np

        backend = self.backend
        started = time.perf_counter()
        enc = backend.encode(self.mel)
        encode_s = time.perf_counter() - started
        step = _Timed(backend.step)
        backend.step = step  # an instance attribute shadows the method for the shared decoder
        ort_run = None
        if backend.name == "onnx":
            session = backend.sessions["decoder_step"]
            ort_run = _Timed(session.run_with_iobinding)
            session.run_with_iobinding = ort_run
        try:
            started = time.perf_counter()
            backend.generate(enc, [self.prompt], self.opts)
            total = time.perf_counter() - started
        finally:
            del backend.step
            if ort_run is not None:
                del session.run_with_iobinding
        single = [t for t, tokens_in in step.calls if np.shape(tokens_in)[-1] == 1]
        prompt_pass = sum(t for t, tokens_in in step.calls if np.shape(tokens_in)[-1] != 1)
        self.tokens = len(single)
        if not keep:
            return
        self.samples["encode"].append(encode_s * 1000)
        self.samples["token"].append((total - prompt_pass) / max(self.tokens, 1) * 1000)
        self.samples["step"].append(sum(single) / max(self.tokens, 1) * 1000)
        if ort_run is not None:
            self.samples["ort"].append(sum(t for t, _ in ort_run.calls) / max(self.tokens, 1) * 1000)

    def result(self) -> dict[str, Any]:
        median = {k: statistics.median(v) for k, v in self.samples.items() if v}
        result: dict[str, Any] = {
            "encoder_ms_per_window": round(median["encode"], 1),
            "decoder_ms_per_token": round(median["token"], 2),
            "decoder_step_ms": round(median["step"], 2),
            "tokens_per_decode": self.tokens,
        }
        if "ort" in median:
            result["onnxruntime_ms_per_token"] = round(median["ort"], 2)
            result["python_share_of_step"] = round(1 - median["ort"] / median["step"], 4)
            result["python_share_of_token"] = round(1 - median["ort"] / median["token"], 4)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="tiny.en", help="bundled name (tiny.en, base) or a transformers dir"
    )
    parser.add_argument("--precisions", default="fp32,int8", help="onnx precisions (fp32, fp16, int8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the encoder / decoder timings")
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from dwkit.audio import load_audio
    from dwkit.bundled import default_cache_dir
    from dwkit.features import log_mel
    from dwkit.metrics import wer

    cache = Path(os.environ.get("DWKIT_CACHE") or default_cache_dir())
    precisions = [p for p in args.precisions.split(",") if p]
    hf_dir, onnx_dirs, audio_path, reference = prepare(args.model, cache, precisions, args.sentences)
    samples = load_audio(audio_path)
    audio_s = len(samples) / 16000

    systems: dict[str, tuple[Any, float]] = {"hf fp32": dwkit_transcriber(hf_dir, "hf", args.threads)}
    for precision, path in onnx_dirs.items():
        systems[f"onnx {precision}"] = dwkit_transcriber(path, "onnx", args.threads)
    n_mels = systems["hf fp32"][0].backend.info.n_mels
    window = log_mel(samples[: 16000 * 30], n_mels)[None]

    warm = samples[: 16000 * 5]
    for name, (transcriber, _) in systems.items():  # first-call costs (allocation, thread pools) excluded
        print(f"warming up {name} ...", file=sys.stderr)
        transcriber.transcribe(warm)
    names = list(systems)
    times: dict[str, list[float]] = {n: [] for n in names}
    texts: dict[str, str] = {}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.runs):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            started = time.perf_counter()
            texts[name] = systems[name][0].transcribe(samples).text
            times[name].append(time.perf_counter() - started)
            print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        loads.append(os.getloadavg()[0])
    print("timing encoders and decoder steps ...", file=sys.stderr)
    probes = {name: Probe(systems[name][0].backend, window) for name in names}
    for _ in range(args.reps):
        for name in names:
            probes[name].sample()
    micros = {name: probe.result() for name, probe in probes.items()}
    loads.append(os.getloadavg()[0])

    base = statistics.median(times["hf fp32"])
    rows = []
    for name in names:
        median = statistics.median(times[name])
        size = None
        if name.startswith("onnx"):
            size = sum(p.stat().st_size for p in onnx_dirs[name.split()[-1]].glob("*.onnx*")) / 2**20
        rows.append(
            {
                "system": name,
                "median_s": round(median, 2),
                "runs_s": [round(t, 2) for t in times[name]],
                "rtfx": round(audio_s / median, 2),
                "speed_vs_hf_fp32": round(base / median, 2),
                "load_s": round(systems[name][1], 2),
                "wer": round(wer(reference, texts[name]), 4),
                "wer_vs_hf_fp32": round(wer(texts["hf fp32"], texts[name]), 4),
                "same_text_as_hf": texts[name].strip() == texts["hf fp32"].strip(),
                "model_mb": round(size, 1) if size else None,
                **micros[name],
            }
        )
    import onnxruntime
    import torch

    result = {
        "benchmark": "onnx_bench",
        "model": args.model,
        "audio_seconds": round(audio_s, 1),
        "threads": args.threads,
        "runs": args.runs,
        "reps": args.reps,
        "mode": "sequential, greedy, timestamps, language en",
        "decode_tokens": DECODE_TOKENS,
        "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__},
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
    out = args.out or RESULTS / f"onnx-{Path(args.model).name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def markdown(result: dict) -> str:
    lines = [
        f"{result['model']}, {result['audio_seconds']} s of espeak-ng speech, {result['threads']} threads, "
        f"onnxruntime {result['versions']['onnxruntime']}, median of {result['runs']} run(s); "
        f"encoder/decoder timings: median of {result['reps']} on the first 30 s window",
        "",
        "| system | median s | RTFx | vs hf fp32 | WER | WER vs hf | encoder ms/window | decoder ms/token "
        "| step ms | Python share (step / token) | load s | model MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        size = f"{r['model_mb']:.1f}" if r["model_mb"] else "-"
        share = "-"
        if "python_share_of_step" in r:
            share = f"{r['python_share_of_step']:.1%} / {r['python_share_of_token']:.1%}"
        lines.append(
            f"| {r['system']} | {r['median_s']:.1f} | {r['rtfx']:.1f} | {r['speed_vs_hf_fp32']:.2f}x | "
            f"{r['wer']:.3f} | {r['wer_vs_hf_fp32']:.3f} | {r['encoder_ms_per_window']:.0f} | "
            f"{r['decoder_ms_per_token']:.2f} | {r['decoder_step_ms']:.2f} | {share} | {r['load_s']:.2f} | {size} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
