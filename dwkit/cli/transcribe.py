"""`dwkit transcribe`: audio files in, txt/srt/vtt/json out (stdout unless -o)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dwkit.cli.common import write_atomic
from dwkit.cli.options import add_longform_flags, add_runtime_flags, longform_options, runtime_config
from dwkit.errors import ConfigError
from dwkit.writers import FORMATS, render


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument("audio", nargs="+", help="audio files (any format FFmpeg reads)")
    parser.add_argument("--output-format", "-f", choices=FORMATS, default="txt")
    parser.add_argument("-o", "--output", type=Path, help="output file (one audio) or directory (several)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    add_runtime_flags(parser)
    add_longform_flags(parser)


def resolve_model(model: str | None) -> Path:
    """--model, else the bundled real tiny.en (imported once and cached)."""
    if model:
        from dwkit.converters.base import resolve_source

        return resolve_source(model)
    from dwkit.bundled import bundled_model

    return bundled_model("tiny.en")


def run(args: argparse.Namespace) -> int:
    from dwkit.audio import load_audio
    from dwkit.transcriber import Transcriber

    if args.output and len(args.audio) > 1 and args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"{args.output}: with several audio files, -o must be a directory")
    audios = [load_audio(path) for path in args.audio]  # bad audio fails before the model loads
    transcriber = Transcriber.from_model_dir(
        resolve_model(args.model), args.backend, runtime_config(args), longform_options(args)
    )
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    transcripts = transcriber.transcribe_batch(audios, progress=show_progress)
    for path, transcript in zip(args.audio, transcripts):
        transcript.source = path
        text = render(transcript, args.output_format)
        if args.output is None:
            sys.stdout.write(text)
        elif len(args.audio) == 1 and not args.output.is_dir():
            write_atomic(args.output, text)
        else:
            write_atomic(args.output / f"{Path(path).stem}.{args.output_format}", text)
    return 0
