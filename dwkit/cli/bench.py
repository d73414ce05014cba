"""`dwkit bench`: speed of every backend next to transformers, as JSON, markdown and PNG."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dwkit.longform.options import MODES


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark backends against transformers (RTFx, latency, encoder/decoder ms, memory, size)",
        description="Convert MODEL to each backend spec, run every backend in its own process on the same "
        "audio, and compare with the transformers fp32 baseline (always included). Writes "
        "<name>.json, <name>.md and <name>.png into --output.",
    )
    source = parser.add_argument_group("model and audio (one of --model / --synthetic-model)")
    source.add_argument("--config", type=Path, help="TOML file with these settings (flags override it)")
    source.add_argument(
        "--model", help="transformers checkpoint dir, hub id, or bundled name (tiny.en, base)"
    )
    source.add_argument(
        "--synthetic-model",
        metavar="PRESET",
        help="seeded random weights of an exact architecture (distil-large-v3.5, distil-128, tiny-80)",
    )
    source.add_argument("--audio", nargs="+", type=Path, metavar="FILE", help="audio files to transcribe")
    source.add_argument(
        "--synthetic-audio",
        type=float,
        metavar="SECONDS",
        help="espeak-ng speech of about this length (default 60)",
    )
    runs = parser.add_argument_group("what to run")
    runs.add_argument(
        "--backends",
        help="comma-separated BACKEND[:PRECISION][+draft] specs, e.g. hf,hf:bf16,ct2:int8,onnx:fp32,ggml:q8_0 "
        "(hf fp32 is always included as the baseline; +draft: speculative decoding with --draft)",
    )
    runs.add_argument(
        "--draft",
        help='the draft model of +draft specs: a directory or hub id, or "student" (the model\'s decoder '
        "layers first and last, distil-whisper's initialisation)",
    )
    runs.add_argument("--draft-tokens", type=int, help="draft tokens per main-model step (default 5)")
    runs.add_argument("--modes", help=f"comma-separated long-form modes (default: {','.join(MODES)})")
    runs.add_argument("--repeat", type=int, help="timed passes over the audio per system (default 3)")
    runs.add_argument("--threads", type=int, help="CPU threads per system (default: every usable core)")
    runs.add_argument("--batch-size", type=int, help="windows per batch (chunked mode; default 8)")
    runs.add_argument(
        "--tokens-per-window",
        type=int,
        metavar="N",
        help="decode exactly N tokens per window (end-of-text suppressed; default 16 with --synthetic-model)",
    )
    runs.add_argument("--language", help="language of the audio (default en)")
    runs.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run faster-whisper (sequential) and transformers' pipeline (chunked) where installed "
        "(a config's `peers = [...]` names them instead, e.g. whisper.cpp)",
    )
    runs.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the fp32/bf16 matmul floor",
    )
    runs.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the systems of a mode side by side and run their repeats round-robin (default on; "
        "off runs one system at a time: less memory at once, for full-size models)",
    )
    runs.add_argument(
        "--retry-starved",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without interleaving, run a system again when it got under 75%% of its cores while the load "
        "average said other processes held them; keep the better run (default on)",
    )
    runs.add_argument(
        "--device",
        help="where every system runs: cpu (default), cuda or cuda:N (faster-whisper then runs float16, "
        "the transformers pipeline fp16; GPU-only precisions such as hf:fp16 and trt:* need it)",
    )
    runs.add_argument("--timeout", type=float, help="seconds per worker job (default 3600)")
    runs.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="the whole run's wall-clock limit: jobs that would start after it are skipped and each "
        "job's timeout is cut to what is left (needs --no-interleave or --repeat 1)",
    )
    runs.add_argument(
        "--goal",
        type=Path,
        metavar="FILE",
        help="TOML file of the goal to judge the run against (e.g. benchmarks/goals/issue_9.toml)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output", type=Path, help="directory for the JSON, markdown and PNG (default bench-results)"
    )
    out.add_argument("--name", help="file stem of the outputs (default: bench-<model>)")
    out.add_argument(
        "--cache-dir", type=Path, help="converted models (default $DWKIT_CACHE or ~/.cache/dwkit)"
    )
    out.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on stderr"
    )


def config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dwkit.bench.config import load_toml, merged, parse_backends
    from dwkit.bench.goal import Goal

    file_values = load_toml(args.config) if args.config else {}
    flags = {
        "model": args.model,
        "synthetic_model": args.synthetic_model,
        "backends": parse_backends(args.backends) if args.backends is not None else None,
        "modes": tuple(m.strip() for m in args.modes.split(",") if m.strip()) if args.modes else None,
        "audio": list(args.audio) if args.audio else None,
        "synthetic_audio": args.synthetic_audio,
        "repeat": args.repeat,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "tokens_per_window": args.tokens_per_window,
        "draft": args.draft,
        "draft_tokens": args.draft_tokens,
        "language": args.language,
        "peers": args.peers,
        "floor": args.floor,
        "interleave": args.interleave,
        "retry_starved": args.retry_starved,
        "timeout_s": args.timeout,
        "device": args.device,
        "budget_s": args.budget,
        "goal": Goal.load(str(args.goal), Path.cwd()) if args.goal else None,
        "output": args.output,
        "name": args.name,
        "cache_dir": args.cache_dir,
        "command": "dwkit bench " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
    }
    if args.audio and "synthetic_audio" in file_values:
        file_values.pop("synthetic_audio")
    if args.synthetic_audio is not None:
        file_values.pop("audio", None)
    return merged(file_values, flags)


def run(args: argparse.Namespace) -> int:
    from dwkit.bench.report import markdown
    from dwkit.bench.runner import run_bench

    config = config_from_args(args)
    result = run_bench(config, progress=args.progress)
    print(markdown(result))
    for kind, path in result["files"].items():
        print(f"wrote {kind}: {path}", file=sys.stderr)
    failed = [r for r in result["results"] if "error" in r]
    baseline_failed = any(r["label"] == "hf fp32" and r["system"] == "dwkit" for r in failed)
    return 1 if baseline_failed else 0
