"""A small corpus (espeak-ng speech plus broken files), its config, and one local Ray session.

Ray's start and each actor's model load cost seconds, so the module-scoped session is shared
by every job a test module runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Single sentences, ~3-4 s each: one per file keeps every transcription short.
CORPUS_SENTENCES = (0, 2, 3, 5)
BAD_FILES = {"empty.wav": b"", "notes.wav": b"this is a text file, not audio\n" * 20}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, dwkit_cache: Path) -> Path:
    """A directory: four speech files (one in a subfolder) and two bad ones, named .wav."""
    from dwkit.speech import SENTENCES, cached_speech, espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("corpus")
    for n, index in enumerate(CORPUS_SENTENCES):
        target = root / ("sub" if n == 3 else "") / f"speech{n}.wav"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(cached_speech([SENTENCES[index]], dwkit_cache / "speech"), target)
    for name, data in BAD_FILES.items():
        (root / name).write_bytes(data)
    return root


def write_config(path: Path, model: Path, **batch: object) -> Path:
    """A TOML config for `model` (threads pinned, so `dwkit transcribe` matches bit for bit)."""
    table = {"actors": 2, "files_per_batch": 2, "shard_files": 2, **batch}
    lines = [f'model = "{model}"', "threads = 1", "", "[batch]"]
    lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    """One local Ray (2 CPUs) for the module, started the way `dwkit batch` starts it."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    from dwkit.batch.job import connect_ray
    from dwkit.config import BatchSection

    started = connect_ray(ray, None, BatchSection(actors=2))
    yield ray
    if started:
        ray.shutdown()
