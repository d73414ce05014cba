"""`dwkit batch`: a corpus (glob, directory or manifest) transcribed on Ray Data into shards."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dwkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batch",
        help="transcribe a corpus on Ray (local by default), resumable",
        description="Transcribe every file of a corpus with one model per Ray actor. Records go to "
        "Parquet/JSONL shards in --output; a re-run skips files already done (same path and content).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config (examples/prod.toml): model, backend, mode, ... and the [batch] table; "
        "DWKIT_* environment variables override its keys",
    )
    parser.add_argument(
        "--input",
        required=True,
        help="a directory (walked for audio files), a glob (quote it; ** recurses) or a manifest "
        "(a text file, one audio path per line)",
    )
    parser.add_argument("--output", type=Path, required=True, help="output directory (created)")
    parser.add_argument(
        "--address", help="join this Ray cluster (e.g. ray://head:10001 or auto); default: a local Ray"
    )
    parser.add_argument("--actors", type=int, help="override batch.actors (one model each)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    from dwkit.batch import run_batch
    from dwkit.config import Config

    overrides = {"batch": {"actors": args.actors}} if args.actors is not None else None
    if args.config:
        config = Config.from_file(args.config, overrides=overrides, check=False)
    else:
        config = Config.from_dict({}, env=os.environ, overrides=overrides, check=False)
    if args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"--output {args.output}: is a file; give a directory")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    summary = run_batch(config, args.input, args.output, address=args.address, progress=show)
    print(
        f"dwkit batch: {summary.transcribed} files transcribed ({summary.errors} errors, "
        f"{summary.audio_s / 3600:.3f} h audio) in {summary.seconds:.1f} s, {summary.skipped} skipped "
        f"as done; {len(summary.shards)} new shards in {args.output}",
        file=sys.stderr,
    )
    return 0
