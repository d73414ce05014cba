"""`dwkit transcribe`: audio files in, txt/srt/vtt/json out (stdout unless -o)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dwkit.cli.common import check_writable, write_atomic
from dwkit.cli.options import (
    add_draft_flags,
    add_flags,
    add_longform_flags,
    add_runtime_flags,
    config_flags,
    parse_backend_options,
)
from dwkit.errors import ConfigError
from dwkit.writers import render

STDIN = "-"  # the audio argument that means standard input, as in faster-whisper and whisper.cpp


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument(
        "audio", nargs="+", help=f"audio files (any format FFmpeg reads); {STDIN} reads standard input"
    )
    add_flags(parser, ["output_format"])
    parser.add_argument("-o", "--output", type=Path, help="output file (one audio) or directory (several)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config file (examples/prod.toml); DWKIT_* environment variables override its "
        "keys, and flags given here override both",
    )
    add_runtime_flags(parser)
    add_longform_flags(parser)
    add_draft_flags(parser)


def run(args: argparse.Namespace) -> int:
    from dwkit.api import build
    from dwkit.audio import check_audio
    from dwkit.config import Config

    if args.output and len(args.audio) > 1 and args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"{args.output}: with several audio files, -o must be a directory")
    _refuse_stray_numbers(args.audio)
    # Flags alone or over a config file: the same validation, and backend = "auto", either way.
    flags = config_flags(args)
    if args.config:
        config = Config.from_file(args.config, flags=flags, check=False)
    else:
        config = Config.from_dict({}, flags=flags, check=False)
    stems = _output_stems(args.audio, into_directory=args.output is not None)
    if args.output is not None:
        into_directory = len(args.audio) > 1 or args.output.is_dir()
        check_writable(args.output if into_directory else args.output.parent)
    for path in args.audio:  # bad audio fails before the model loads; decoding streams later
        if path != STDIN:  # standard input can be read once: it is checked as it decodes
            check_audio(path)
    sources = [sys.stdin.buffer if path == STDIN else path for path in args.audio]
    if not config.model:
        from dwkit.bundled import bundled_model

        config.model = str(bundled_model("tiny.en"))
    transcriber = build(config, parse_backend_options(args.backend_option))  # checks, resolves "auto"
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    transcripts = transcriber.transcribe_batch(sources, progress=show_progress)
    for path, stem, transcript in zip(args.audio, stems, transcripts):
        transcript.source = path
        text = render(transcript, config.output_format, config.max_words_per_line)
        if args.output is None:
            sys.stdout.write(text)
        elif len(args.audio) == 1 and not args.output.is_dir():
            write_atomic(args.output, text)
        else:
            write_atomic(args.output / f"{stem}.{config.output_format}", text)
    return 0


def _output_stems(audio: list[str], into_directory: bool) -> list[str]:
    """The name each input's transcript gets under `-o DIR`; there two inputs may not share one.

    `a/s0.wav b/s0.wav` would otherwise write one file and lose a transcript, so the clash is
    refused before any work.
    """
    if audio.count(STDIN) > 1:
        raise ConfigError(f"standard input ({STDIN}) can be given once")
    stems = ["stdin" if path == STDIN else Path(path).stem for path in audio]
    owner: dict[str, str] = {}
    for path, stem in zip(audio, stems):
        if into_directory and stem in owner:
            raise ConfigError(
                f"{owner[stem]} and {path} would both be written as {stem}.* under -o: "
                "transcribe them in separate runs (or rename one)"
            )
        owner[stem] = path
    return stems


def _refuse_stray_numbers(paths: list[str]) -> None:
    """A number where an audio path should be is a temperature left over from the old
    `--temperature 0 0.2 a.wav` syntax (which swallowed the audio path): say how to write it."""
    for path in paths:
        try:
            float(path)
        except ValueError:
            continue
        if not Path(path).exists():
            raise ConfigError(
                f"{path}: no such audio file; --temperature takes one comma-separated list "
                "(--temperature 0,0.2) or is repeated (--temperature 0 --temperature 0.2)"
            )
