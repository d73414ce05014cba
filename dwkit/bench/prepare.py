"""The inputs of a run: the source checkpoint (given, bundled, from the hub, or a synthetic
architecture built in a worker) and the audio (given files or espeak-ng speech)."""

from __future__ import annotations

import math
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwkit.bench.config import STUDENT, BenchConfig
from dwkit.errors import ConfigError

SECONDS_PER_SENTENCE = 4.4  # the built-in espeak-ng sentences average ~4.4 s with their pauses


def resolve_model(config: BenchConfig, cache: Path, step: Callable[..., dict[str, Any]]) -> Path:
    """A transformers checkpoint directory: synthetic (built in a worker), bundled, local or hub."""
    if config.synthetic_model:
        from dwkit.synthetic import preset_dims

        preset_dims(config.synthetic_model)  # unknown preset: one-line error before any work
        result = step(
            f"building {config.synthetic_model}",
            {"kind": "synthetic_model", "preset": config.synthetic_model, "cache_dir": str(cache)},
        )
        if "error" in result:
            raise ConfigError(f"synthetic model {config.synthetic_model}: {result['error']}")
        return Path(result["model_dir"])
    from dwkit.bundled import BUNDLED, bundled_model
    from dwkit.converters.base import resolve_source
    from dwkit.foreign import as_transformers_checkpoint

    model = str(config.model)
    if model in BUNDLED and not Path(model).is_dir():
        return bundled_model(model, cache)
    # A faster-whisper directory or a whisper.cpp file: benched from its transformers import.
    return as_transformers_checkpoint(resolve_source(model), cache)


def resolve_draft(
    config: BenchConfig, model_dir: Path, converted: dict[tuple[str, str], Path]
) -> Path | None:
    """The draft model of `+draft` specs: a directory, a converted copy of the model, or a
    student of the model built beside it once (its decoder's first and last layers;
    safetensors only, no torch in the parent)."""
    if not any(s.draft for s in config.backends):
        return None
    if config.draft_spec is not None:
        from dwkit.bench.plan import conversion_for

        key = conversion_for(config.draft_spec)
        if key is None:
            return model_dir
        if key not in converted:
            raise ConfigError(f"draft {config.draft}: its conversion failed (see the conversions record)")
        return converted[key]
    if config.draft != STUDENT:
        from dwkit.converters.base import resolve_source

        return resolve_source(str(config.draft))
    from dwkit.synthetic import make_student

    student = model_dir.parent / f"{model_dir.name}-student"
    if (student / "model.safetensors").is_file():
        return student
    return make_student(model_dir, student)


def prepare_audio(config: BenchConfig, cache: Path) -> tuple[list[Path], str | None]:
    """The audio files, and their spoken text when they were synthesised here."""
    if config.audio:
        return [Path(p) for p in config.audio], None
    path, text = synthetic_speech(float(config.synthetic_audio or 60.0), cache)
    return [path], text


def synthetic_speech(seconds: float, cache: Path) -> tuple[Path, str]:
    """About `seconds` of espeak-ng speech: the built-in sentences in order (cycled), whole."""
    from dwkit.speech import SENTENCES, cached_speech, espeak_available

    if not espeak_available():
        raise ConfigError(
            "--synthetic-audio needs espeak-ng (Debian/Ubuntu: apt-get install espeak-ng); or pass --audio FILES"
        )
    count = max(1, round(seconds / SECONDS_PER_SENTENCE))
    for _ in range(10):
        sentences = [SENTENCES[i % len(SENTENCES)] for i in range(count)]
        path = cached_speech(sentences, cache / "speech")
        duration = wav_seconds(path)
        if duration >= seconds - SECONDS_PER_SENTENCE / 2:
            break
        count += max(1, math.ceil((seconds - duration) / SECONDS_PER_SENTENCE))
    return path, " ".join(sentences)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()
