"""`dwconvert`: export a transformers Whisper checkpoint to ct2, onnx, trt or ggml
(or import a CTranslate2 model, a whisper.cpp file or an ONNX export back into transformers
with --from ct2|ggml|onnx --to hf)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dwkit.cli.common import add_version, run_cli
from dwkit.errors import ConfigError
from dwkit.foreign import IMPORTERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwconvert",
        description="Convert a Whisper checkpoint (local directory or hub id) to another runtime's format.",
    )
    add_version(parser)
    parser.add_argument("model", help="transformers checkpoint directory or hub id (org/name)")
    parser.add_argument("out", type=Path, help="output directory (written atomically)")
    from dwkit.converters import format_names

    parser.add_argument(
        "--to",
        required=True,
        choices=[*format_names(), "hf"],
        help="target format (hf: with --from ct2|ggml|onnx)",
    )
    parser.add_argument(
        "--from",
        dest="source_format",
        default="hf",
        choices=["hf", *IMPORTERS],
        help="source format (ct2: a CTranslate2 / faster-whisper directory; ggml: a whisper.cpp file; onnx: dwkit's or an optimum / onnx-community export)",
    )
    parser.add_argument(
        "--precision",
        "--quantization",
        dest="precision",
        help="the target format's own precision name (ct2: float32/int8/...; onnx/trt: fp32/fp16/int8; ggml: f16/q8_0/...)",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="skip loading the output and comparing with transformers"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it exists (only once the new one is complete)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="trt: check the graphs and write the build plan, build nothing"
    )
    parser.add_argument(
        "--max-batch", type=int, default=None, help="trt: largest batch size in the optimisation profiles"
    )
    parser.add_argument(
        "--word-timestamps",
        action="store_true",
        help="onnx/trt: also export the cross-attention graph that word timestamps need",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.to == "hf":
        if args.source_format not in IMPORTERS:
            raise ConfigError(
                f"--to hf imports another format's model: add --from {' or --from '.join(IMPORTERS)}"
            )
        from dwkit.converters.base import resolve_source

        module, function = IMPORTERS[args.source_format].split(":")
        importer = getattr(importlib.import_module(module), function)
        options: dict[str, object] = {"overwrite": args.overwrite}
        if args.precision is not None:  # an optimum export's variant (fp32, fp16, ...)
            if args.source_format != "onnx":
                raise ConfigError(
                    "--precision with --to hf picks an ONNX export's variant: use it with --from onnx"
                )
            options["precision"] = args.precision
        result = importer(resolve_source(args.model), args.out, **options)
    else:
        if args.source_format != "hf":
            raise ConfigError(
                f"--from {args.source_format} converts only to hf; convert to {args.to} from the hf checkpoint"
            )
        from dwkit.converters import convert

        opts: dict[str, object] = {"validate": not args.no_validate, "overwrite": args.overwrite}
        if args.to == "trt":
            opts.update(dry_run=args.dry_run, max_batch=args.max_batch)
        elif args.dry_run or args.max_batch is not None:
            raise ConfigError("--dry-run and --max-batch apply to --to trt only")
        if args.word_timestamps:
            if args.to not in ("onnx", "trt"):
                raise ConfigError(
                    f"--word-timestamps applies to --to onnx and trt (a {args.to} model needs no extra export)"
                )
            opts["word_timestamps"] = True
        result = convert(args.model, args.out, args.to, args.precision, **opts)
    validation = result.validation or {}
    status = (
        "validated"
        if validation.get("passed")
        else ("not validated" if not validation else "validation recorded")
    )
    print(f"wrote {result.out_dir} ({result.fmt}, {result.precision}; {status})")
    return 0


def entry(argv: list[str] | None = None) -> int:
    return run_cli("dwconvert", main, argv)


if __name__ == "__main__":
    sys.exit(entry())
