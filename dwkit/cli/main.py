"""`dwkit`: transcribe, demo (and the commands other modules register in COMMANDS)."""

from __future__ import annotations

import argparse
import importlib
import sys

from dwkit.cli.common import add_version, run_cli

# subcommand -> module with `add_parser(subparsers)` and `run(args) -> int`
COMMANDS = {
    "transcribe": "dwkit.cli.transcribe",
    "demo": "dwkit.cli.demo",
    "info": "dwkit.cli.info",
    "backends": "dwkit.cli.backends",
    "bench": "dwkit.cli.bench",
    "parity": "dwkit.cli.parity",
    "batch": "dwkit.cli.batch",
    "serve": "dwkit.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwkit", description="Transcribe with distil-whisper on any runtime, and check runtimes agree."
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command]).run(args))


def entry(argv: list[str] | None = None) -> int:
    return run_cli("dwkit", main, argv)


if __name__ == "__main__":
    sys.exit(entry())
