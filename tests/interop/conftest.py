"""Model files made by the field's own tools, once per test session.

- `fw_tiny_en`: the bundled real tiny.en converted by CTranslate2's `ct2-transformers-converter`
  (float16, tokenizer and preprocessor files copied: how faster-whisper's models are made).
- `ggml_tiny_en`: the same checkpoint written as whisper.cpp's convert-h5-to-ggml.py writes
  it (f16), by the independent writer in `ggml_writer.py`.
- `hf_short_text`: transformers' own transcript of speech_short, the reference both must match.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.interop import ggml_writer

RUNTIME_THREADS = 2


def ct2_transformers_converter(hf_dir: Path, out: Path, quantization: str = "float16") -> Path:
    """What `ct2-transformers-converter --model HF --output_dir OUT --copy_files tokenizer.json
    preprocessor_config.json --quantization float16` runs (faster-whisper's model cards),
    called in-process: the CLI is a thin wrapper of this class, and a second interpreter would
    import torch and transformers again."""
    from ctranslate2.converters import TransformersConverter

    converter = TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"])
    converter.convert(str(out), quantization=quantization)
    return out


def _cached(cache: Path, name: str, key: str, build: Callable[[Path], object]) -> Path:
    """`build(path)` once per key under the run cache, published by rename when complete."""
    from dwkit.bundled import cache_lock

    out = cache / "interop" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    with cache_lock(cache / "interop" / f".{name}.lock"):
        if not out.exists():
            staging = out.with_name(out.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            build(staging)
            staging.rename(out)
    return out


def _source_key(hf_dir: Path, *parts: str) -> str:
    from dwkit.manifest import read_manifest

    return repr(((read_manifest(hf_dir) or {}).get("weights_checksum"), *parts))


@pytest.fixture(scope="session")
def fw_tiny_en(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    ctranslate2 = pytest.importorskip("ctranslate2")
    key = _source_key(tiny_en_dir, ctranslate2.__version__)
    return (
        _cached(
            dwkit_cache, "fw-tiny.en", key, lambda out: ct2_transformers_converter(tiny_en_dir, out / "m")
        )
        / "m"
    )


@pytest.fixture(scope="session")
def ggml_tiny_en(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    """An f16 ggml-tiny.en.bin alone in its directory."""
    key = _source_key(tiny_en_dir, Path(ggml_writer.__file__).read_text())
    built = _cached(
        dwkit_cache,
        "ggml-tiny.en",
        key,
        lambda out: ggml_writer.write_ggml(tiny_en_dir, out / "ggml-tiny.en.bin"),
    )
    return built / "ggml-tiny.en.bin"


def transcribe_text(model: Path, audio: Path, backend: str | None = None, **options: object) -> str:
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.transcriber import Transcriber

    runtime = RuntimeConfig(threads=RUNTIME_THREADS, options=dict(options))
    transcriber = Transcriber.from_model_dir(model, backend, runtime)
    try:
        return transcriber.transcribe(audio).text
    finally:
        transcriber.backend.close()


@pytest.fixture(scope="session")
def hf_short_text(tiny_en_dir: Path, speech_short: tuple[Path, str]) -> str:
    return transcribe_text(tiny_en_dir, speech_short[0], "hf")
