"""Command-line flags for runtime and long-form options, shared by transcribe, parity and bench."""

from __future__ import annotations

import argparse

from dwkit import runtimes
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError
from dwkit.longform.options import MODES, LongformOptions
from dwkit.runtimes.base import RuntimeConfig

_DEFAULTS = LongformOptions()


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument(
        "--model", help="model directory (transformers checkpoint or dwconvert output) or hub id"
    )
    group.add_argument(
        "--backend", choices=list(runtimes.names()), help="default: from the model directory's manifest"
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    group.add_argument("--precision", help="the backend's own precision/compute type name")
    group.add_argument("--threads", type=int, default=0, help="intra-op threads (0: library default)")
    group.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend-specific setting, repeatable (e.g. ggml flash_attn=false, onnx provider=tensorrt)",
    )


def add_longform_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("long-form (defaults: distil-whisper's recommendations)")
    group.add_argument("--mode", choices=MODES, default=_DEFAULTS.mode)
    group.add_argument("--language", help="language code or name; default: detect (multilingual models)")
    group.add_argument("--task", choices=["transcribe", "translate"], default=_DEFAULTS.task)
    group.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    group.add_argument("--beam-size", type=int, default=1)
    group.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=list(_DEFAULTS.temperatures),
        help="fallback temperatures, tried in order",
    )
    group.add_argument(
        "--compression-ratio-threshold", type=float, default=_DEFAULTS.compression_ratio_threshold
    )
    group.add_argument("--logprob-threshold", type=float, default=_DEFAULTS.logprob_threshold)
    group.add_argument("--no-speech-threshold", type=float, default=_DEFAULTS.no_speech_threshold)
    group.add_argument("--condition-on-prev-tokens", action="store_true")
    group.add_argument(
        "--chunk-length", type=float, default=_DEFAULTS.chunk_length_s, help="chunked mode, seconds"
    )
    group.add_argument(
        "--stride-length", type=float, default=None, help="chunked mode, seconds each side (default chunk/6)"
    )
    group.add_argument("--no-timestamps", action="store_true", help="chunked mode: decode without timestamps")
    group.add_argument("--seed", type=int, default=None, help="seed for sampling above temperature 0")


def runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    return RuntimeConfig(
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batch_size=args.batch_size,
        options=parse_backend_options(args.backend_option),
    )


def parse_backend_options(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs; values read as booleans, integers or floats where they look like one."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--backend-option {item!r}: expected KEY=VALUE")
        lowered = raw.lower()
        value: object = raw
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        options[key] = value
    return options


def longform_options(args: argparse.Namespace) -> LongformOptions:
    return LongformOptions(
        mode=args.mode,
        language=args.language,
        task=args.task,
        temperatures=tuple(args.temperature),
        compression_ratio_threshold=args.compression_ratio_threshold,
        logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold,
        condition_on_prev_tokens=args.condition_on_prev_tokens,
        chunk_length_s=args.chunk_length,
        stride_length_s=args.stride_length,
        batch_size=args.batch_size,
        return_timestamps=not args.no_timestamps,
        decode=DecodeOptions(beam_size=args.beam_size, seed=args.seed),
    )
