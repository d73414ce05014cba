"""`dwkit.load`: one Transcriber from a config file, a Config or a model directory, safe to
share between threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import dwkit
from dwkit.audio import load_audio
from dwkit.config import Config
from dwkit.errors import ConfigError, ModelError
from dwkit.transcriber import Transcriber


@pytest.fixture(scope="module")
def tiny(tiny_en_dir) -> Transcriber:
    return dwkit.load(tiny_en_dir)


def _summary(transcript):
    return transcript.text, [(s.start, s.end, s.text, tuple(s.tokens)) for s in transcript.segments]


def test_load_a_model_directory(tiny, speech_short, simple_wer):
    path, spoken = speech_short
    assert isinstance(tiny, Transcriber) and tiny.backend.name == "hf"
    transcript = tiny.transcribe(path)
    assert transcript.backend == "hf" and transcript.source == str(path)
    assert transcript.duration == pytest.approx(7.6, abs=0.5)
    assert simple_wer(spoken, transcript.text) < 0.2


def test_load_a_config_file_and_a_config_object(tiny_en_dir, tmp_path):
    path = tmp_path / "svc.toml"
    path.write_text(
        f'model = "{tiny_en_dir}"\nbackend = "auto"\nthreads = 1\n[decode]\nmax_new_tokens = 20\n'
    )
    from_file = dwkit.load(path)
    assert from_file.backend.name == "hf" and from_file.options.decode.max_new_tokens == 20
    config = Config.from_file(path, env={})
    from_object = dwkit.load(config, mode="chunked", decode={"beam_size": 2})
    assert from_object.options.mode == "chunked" and from_object.options.decode.beam_size == 2
    assert from_object.options.decode.max_new_tokens == 20  # the rest of the config is kept


def test_load_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        dwkit.load(tmp_path / "missing.toml")
    with pytest.raises(ModelError, match="no such model directory"):
        dwkit.load(tmp_path / "missing-model")
    with pytest.raises(ConfigError, match="takes a Config"):
        dwkit.load(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model: not set"):
        dwkit.load(Config())


def test_file_path_bytes_and_array_give_the_same_transcript(tiny, speech_short):
    path = speech_short[0]
    from_path = tiny.transcribe(path)  # streamed features
    from_bytes = tiny.transcribe(path.read_bytes())
    from_array = tiny.transcribe(load_audio(path))  # features of the whole array
    assert _summary(from_path) == _summary(from_bytes) == _summary(from_array)
    assert from_path.duration == from_array.duration


def test_threads_get_the_same_results_as_sequential_calls(tiny, speech_short):
    clips = [str(speech_short[0]), load_audio(speech_short[0])[: 16000 * 4]]
    expected = [_summary(tiny.transcribe(c)) for c in clips]
    jobs = clips * 2  # four calls at once, two per clip, sharing one backend
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(tiny.transcribe, jobs))
    assert [_summary(t) for t in results] == expected * 2
