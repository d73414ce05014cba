"""`dwkit parity`: gate converted models on transcribing like transformers.

Runs the transformers baseline (hf, fp32) and every candidate on the same audio, prints a
table of the three levels (numerics, tokens, transcripts) per candidate and mode, writes
JSON and JUnit XML when asked, and exits 1 with one line per failed threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dwkit.cli.common import write_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "parity",
        help="check converted models transcribe like transformers (numerics, tokens, transcripts)",
        description=(
            "Compare each candidate with the transformers baseline (hf backend, fp32, on --model) on "
            "the same audio; exit 1 when a threshold fails."
        ),
    )
    parser.add_argument(
        "--model", required=True, help="the source transformers checkpoint directory (or hub id)"
    )
    parser.add_argument(
        "--candidate",
        action="append",
        required=True,
        metavar="BACKEND:PATH[:PRECISION]",
        help="a converted model to gate (repeatable), e.g. ct2:out/ct2-int8 or hf:ckpt:bf16; "
        "PRECISION defaults to the one recorded in the model's dwkit.json",
    )
    parser.add_argument(
        "--audio",
        nargs="+",
        help="audio files for every mode (default: built-in speech: demo.flac for short, ~60 s for long-form)",
    )
    parser.add_argument(
        "--modes",
        default="short,sequential,chunked",
        help="comma-separated modes: short (first 30 s), sequential, chunked (default: all)",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        help="TOML file overriding the packaged default thresholds (e.g. ci/parity.toml)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write the full report as JSON")
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="OUT.xml",
        help="write JUnit XML (a testcase per candidate x level x mode)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (baseline and candidates)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: library default)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on stderr"
    )


def parse_modes(text: str) -> tuple[str, ...]:
    from dwkit.errors import ConfigError
    from dwkit.parity import MODES

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes {text!r}: choose from {', '.join(MODES)} (comma-separated)")
    return modes


def run(args: argparse.Namespace) -> int:
    from dwkit.converters.base import resolve_source
    from dwkit.parity import AudioSet, Candidate, ParityConfig, run_parity

    modes = parse_modes(args.modes)
    candidates = [Candidate.parse(spec) for spec in args.candidate]
    config = ParityConfig.load(args.thresholds)
    audio = AudioSet.from_files(args.audio) if args.audio else None
    report = run_parity(
        resolve_source(args.model),
        candidates,
        audio=audio,
        modes=modes,
        config=config,
        device=args.device,
        threads=args.threads,
        progress=args.progress,
    )
    print(report.table())
    if args.json:
        write_atomic(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    if args.junit:
        write_atomic(args.junit, report.junit_xml())
    failures = report.failures()
    total = len(report.results)
    if failures:
        for line in failures:
            print(line, file=sys.stderr)
        failed = sum(1 for result in report.results if not result.passed)
        print(f"\nparity: FAILED ({failed} of {total} testcases; {len(failures)} threshold(s) or error(s))")
        return 1
    print(f"\nparity: passed ({total} testcases, {len(candidates)} candidate(s))")
    return 0
