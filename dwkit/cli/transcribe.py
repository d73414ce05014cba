"""`dwkit transcribe`: audio files in, txt/srt/vtt/json out (stdout unless -o)."""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path
from typing import Any

from dwkit.cli.common import check_writable, write_atomic
from dwkit.cli.options import add_longform_flags, add_runtime_flags, longform_options, runtime_config
from dwkit.errors import ConfigError
from dwkit.writers import FORMATS, render

STDIN = "-"  # the audio argument that means standard input, as in faster-whisper and whisper.cpp


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument(
        "audio", nargs="+", help=f"audio files (any format FFmpeg reads); {STDIN} reads standard input"
    )
    parser.add_argument("--output-format", "-f", choices=FORMATS, default="txt")
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
    _record_explicit_flags(parser)


def resolve_model(model: str | None) -> Path:
    """--model, else the bundled real tiny.en (imported once and cached)."""
    if model:
        from dwkit.converters.base import resolve_source

        return resolve_source(model)
    from dwkit.bundled import bundled_model

    return bundled_model("tiny.en")


def run(args: argparse.Namespace) -> int:
    from dwkit.audio import check_audio
    from dwkit.transcriber import Transcriber

    if args.output and len(args.audio) > 1 and args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"{args.output}: with several audio files, -o must be a directory")
    stems = _output_stems(args.audio, into_directory=args.output is not None)
    if args.output is not None:
        into_directory = len(args.audio) > 1 or args.output.is_dir()
        check_writable(args.output if into_directory else args.output.parent)
    for path in args.audio:  # bad audio fails before the model loads; decoding streams later
        if path != STDIN:  # standard input can be read once: it is checked as it decodes
            check_audio(path)
    sources = [sys.stdin.buffer if path == STDIN else path for path in args.audio]
    output_format = args.output_format
    if args.config:
        from dwkit.api import load
        from dwkit.config import Config

        config = Config.from_file(args.config, overrides=_flag_overrides(args), check=False)
        if not config.model:
            config.model = str(resolve_model(None))
        output_format = config.output_format
        transcriber = load(config)  # checks the combinations and resolves backend = "auto"
    else:
        transcriber = Transcriber.from_model_dir(
            resolve_model(args.model), args.backend, runtime_config(args), longform_options(args)
        )
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    transcripts = transcriber.transcribe_batch(sources, progress=show_progress)
    for path, stem, transcript in zip(args.audio, stems, transcripts):
        transcript.source = path
        text = render(transcript, output_format)
        if args.output is None:
            sys.stdout.write(text)
        elif len(args.audio) == 1 and not args.output.is_dir():
            write_atomic(args.output, text)
        else:
            write_atomic(args.output / f"{stem}.{output_format}", text)
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


# flag dest -> config key; --no-timestamps is longform.return_timestamps inverted.
FLAG_KEYS = {
    "model": "model",
    "backend": "backend",
    "device": "device",
    "precision": "precision",
    "threads": "threads",
    "batch_size": "batch_size",
    "mode": "mode",
    "language": "language",
    "task": "task",
    "output_format": "output_format",
    "beam_size": "decode.beam_size",
    "seed": "decode.seed",
    "temperature": "longform.temperatures",
    "compression_ratio_threshold": "longform.compression_ratio_threshold",
    "logprob_threshold": "longform.logprob_threshold",
    "no_speech_threshold": "longform.no_speech_threshold",
    "condition_on_prev_tokens": "longform.condition_on_prev_tokens",
    "chunk_length": "longform.chunk_length_s",
    "stride_length": "longform.stride_length_s",
    "no_timestamps": "longform.return_timestamps",
}
_EXPLICIT = "_explicit_flags"


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the flags the user typed (a flag left at its default overrides nothing)."""
    overrides: dict[str, Any] = {}
    for dest in sorted(getattr(args, _EXPLICIT, None) or ()):
        if dest not in FLAG_KEYS:
            continue
        value = getattr(args, dest)
        if dest == "no_timestamps":
            value = not value
        table, _, key = FLAG_KEYS[dest].rpartition(".")
        (overrides.setdefault(table, {}) if table else overrides)[key] = value
    return overrides


def _record_explicit_flags(parser: argparse.ArgumentParser) -> None:
    """Make each optional flag note its dest in the namespace when given on the command line."""
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            action.__class__ = _recording(type(action))


@cache
def _recording(cls: type) -> type:
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, _EXPLICIT, (getattr(namespace, _EXPLICIT, None) or frozenset()) | {self.dest})
        cls.__call__(self, parser, namespace, values, option_string)

    return type(f"Recording{cls.__name__}", (cls,), {"__call__": __call__})
