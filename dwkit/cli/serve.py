"""`dwkit serve`: OpenAI's audio API over HTTP for the model a config file describes."""

from __future__ import annotations

import argparse
from pathlib import Path

from dwkit.errors import DwkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve OpenAI's audio API (POST /v1/audio/transcriptions, /v1/audio/translations)",
        description="Load the model once and serve OpenAI-compatible speech-to-text over HTTP, "
        "decoding concurrent requests together (dynamic batching). Settings: the config's keys "
        "(as for dwkit transcribe) plus its [serve] table (examples/prod.toml).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config file (examples/prod.toml); DWKIT_* environment variables override it. "
        "Without it: the bundled tiny.en with the defaults",
    )
    parser.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: serve.port, 8000)")
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from dwkit.serve.app import create_app
    except ImportError as exc:
        raise DwkitError(f"dwkit serve needs the serve extra ({exc}): pip install 'dwkit[serve]'") from exc
    from dwkit.api import load
    from dwkit.bundled import bundled_model
    from dwkit.config import Config

    overrides = {"serve": {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}}
    if args.config:
        config = Config.from_file(args.config, overrides=overrides, check=False)
    else:
        config = Config.from_dict({}, overrides=overrides, check=False)
    if not config.model:
        config.model = str(bundled_model("tiny.en"))
    app = create_app(config, load(config))
    uvicorn.run(app, host=config.serve.host, port=config.serve.port, log_level=args.log_level)
    return 0
