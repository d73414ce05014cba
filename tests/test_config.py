"""The TOML config: values, validation that names the key and file, environment overrides,
impossible combinations, and `backend = "auto"`."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dwkit import config as config_module
from dwkit import devices, runtimes
from dwkit.config import Config
from dwkit.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _toml(tmp_path: Path, text: str, name: str = "prod.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _converted(tmp_path: Path, fmt: str, precision: str) -> Path:
    """A directory whose manifest says it is a `fmt` conversion (no weights needed to check it)."""
    model = tmp_path / f"m-{fmt}-{precision}"
    model.mkdir()
    (model / "dwkit.json").write_text(
        json.dumps({"manifest_version": 1, "format": fmt, "precision": precision})
    )
    return model


def test_example_file_lists_every_key_at_its_default():
    example = Config.from_file(REPO / "examples" / "prod.toml", env={})
    assert example.to_dict() == Config(model=example.model).to_dict()
    assert set(example.origins) >= {"backend", "decode.beam_size", "longform.stride_length_s"}


def test_values_reach_the_runtime_and_longform_options(tmp_path):
    path = _toml(
        tmp_path,
        """
        model = "org/model"
        backend = "hf"
        device = "cpu"
        precision = "bf16"
        threads = 3
        batch_size = 4
        mode = "chunked"
        language = "English"
        task = "transcribe"
        output_format = "srt"
        [decode]
        beam_size = 2
        patience = 1.5
        length_penalty = 0.5
        suppress_tokens = [1, 2]
        suppress_blank = false
        max_new_tokens = 64
        seed = 7
        [longform]
        temperatures = [0, 0.5]
        compression_ratio_threshold = "none"
        logprob_threshold = -2
        no_speech_threshold = 0.4
        condition_on_prev_tokens = true
        chunk_length_s = 20
        stride_length_s = 3.5
        return_timestamps = false
        """,
    )
    config = Config.from_file(path, env={})
    runtime = config.to_runtime_config()
    assert (runtime.device, runtime.precision, runtime.threads, runtime.batch_size) == ("cpu", "bf16", 3, 4)
    opts = config.to_longform_options()
    assert (opts.mode, opts.language, opts.batch_size, opts.return_timestamps) == (
        "chunked",
        "English",
        4,
        False,
    )
    assert opts.temperatures == (0.0, 0.5) and isinstance(opts.temperatures[0], float)
    assert opts.compression_ratio_threshold is None and opts.logprob_threshold == -2.0
    assert (opts.chunk_length_s, opts.stride_length_s, opts.condition_on_prev_tokens) == (20.0, 3.5, True)
    d = opts.decode
    assert (d.beam_size, d.patience, d.length_penalty, d.suppress_tokens) == (2, 1.5, 0.5, [1, 2])
    assert (d.suppress_blank, d.max_new_tokens, d.seed) == (False, 64, 7)
    assert config.output_format == "srt" and config.resolved_backend == "hf"


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1", r"prod\.toml: colour: unknown key \(known keys at top level: model, backend"),
        (
            "[decode]\nbeam = 2",
            r"prod\.toml: decode\.beam: unknown key \(known keys at \[decode\]: beam_size",
        ),
        ("[longform]\ntemperature = [0.0]", r"longform\.temperature: unknown key"),
        ("[extra]\nx = 1", r"prod\.toml: extra: unknown key"),
        ("decode = 3", r"prod\.toml: decode: must be a table"),
        ('threads = "4"', r"prod\.toml: threads: expected an integer, got \"4\" \(string\)"),
        ("[decode]\nbeam_size = 1.5", r"decode\.beam_size: expected an integer, got 1\.5"),
        ("[decode]\nsuppress_blank = 1", r"decode\.suppress_blank: expected a boolean"),
        ("[longform]\nno_speech_threshold = true", r"no_speech_threshold: expected a number \(or \"none\""),
        ('[longform]\ntemperatures = [0.0, "hot"]', r"longform\.temperatures: expected a number"),
        ("[longform]\ntemperatures = 0.5", r"longform\.temperatures: expected a list of numbers"),
        (
            'backend = "tensorflow"',
            r"prod\.toml: backend = \"tensorflow\": choose one of hf, ct2, onnx, trt, ggml, openvino, auto",
        ),
        ('device = "gpu"', r"device = \"gpu\": use cpu, cuda or cuda:N"),
        ('mode = "fast"', r"mode = \"fast\": choose one of sequential, chunked"),
        ('output_format = "doc"', r"output_format = \"doc\": choose one of txt"),
        ('language = "klingon"', r"language = \"klingon\": not a Whisper language"),
        ("threads = -1", r"threads = -1: must be >= 0"),
        ("batch_size = 0", r"batch_size = 0: must be >= 1"),
        ("[decode]\nbeam_size = 0", r"decode\.beam_size = 0: must be >= 1"),
        ("[longform]\ntemperatures = []", r"longform\.temperatures: must not be empty"),
        ("[longform]\ntemperatures = [-0.1]", r"longform\.temperatures = -0\.1: must be >= 0"),
        ("[longform]\nchunk_length_s = 40", r"longform\.chunk_length_s = 40\.0: must be <= 30"),
        (
            "[longform]\nstride_length_s = 13",
            r"longform\.stride_length_s: the stride \(13 s each side\) must be less",
        ),
        ('backend = "ggml"\ndevice = "cuda"', r"device = \"cuda\": the ggml backend .* CPU only"),
        ('backend = "trt"', r"device = \"cpu\": the trt backend runs on an NVIDIA GPU only"),
        ("threads = ", r"prod\.toml: not valid TOML"),
    ],
)
def test_invalid_values_name_the_key_and_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_file(_toml(tmp_path, text), env={})


def test_missing_and_directory_config_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        Config.from_file(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        Config.from_file(tmp_path)


def test_none_unsets_optional_keys_and_is_refused_elsewhere(tmp_path):
    config = Config.from_file(_toml(tmp_path, 'precision = "none"\n[decode]\nseed = "None"'), env={})
    assert config.precision is None and config.decode.seed is None
    with pytest.raises(ConfigError, match=r"threads: expected an integer, got \"none\""):
        Config.from_file(_toml(tmp_path, 'threads = "none"'), env={})


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    path = _toml(
        tmp_path, 'threads = 2\nmode = "chunked"\n[decode]\nbeam_size = 3\n[longform]\nchunk_length_s = 20'
    )
    env = {
        "DWKIT_THREADS": "6",
        "DWKIT_DECODE__BEAM_SIZE": "5",
        "DWKIT_DECODE__SUPPRESS_BLANK": "off",
        "DWKIT_LONGFORM__TEMPERATURES": "0.0, 0.4",
        "DWKIT_LONGFORM__NO_SPEECH_THRESHOLD": "none",
        "DWKIT_DECODE__SUPPRESS_TOKENS": "[1, 2, 3]",
        "DWKIT_CACHE": "/somewhere",  # another setting of dwkit's: not a config key, left alone
        "HOME": "/root",
    }
    config = Config.from_file(path, env=env, overrides={"decode": {"beam_size": 1}})
    assert config.threads == 6 and config.mode == "chunked" and config.longform.chunk_length_s == 20.0
    assert config.decode.beam_size == 1 and config.decode.suppress_blank is False
    assert config.longform.temperatures == [0.0, 0.4] and config.longform.no_speech_threshold is None
    assert config.decode.suppress_tokens == [1, 2, 3]
    assert config.origin("threads") == "environment variable DWKIT_THREADS"
    assert config.origin("decode.beam_size") == "command line"
    assert config.origin("mode") == str(path)


def test_os_environ_applies_to_files_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DWKIT_BATCH_SIZE", "2")
    monkeypatch.setenv("DWKIT_LANGUAGE", "de")
    assert Config.from_file(_toml(tmp_path, "batch_size = 8")).batch_size == 2
    assert Config.from_dict({}).language is None  # a dict takes the environment only when given it


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DWKIT_THREADS": "four"}, r"environment variable DWKIT_THREADS: threads: expected an integer"),
        (
            {"DWKIT_DECODE__BEAMSIZE": "2"},
            r"DWKIT_DECODE__BEAMSIZE: unknown key decode\.beamsize \(known: .*BEAM_SIZE",
        ),
        (
            {"DWKIT_LONGFORM__TEMPERATURES": "0, warm"},
            r"DWKIT_LONGFORM__TEMPERATURES: longform\.temperatures",
        ),
        ({"DWKIT_DECODE__SUPPRESS_BLANK": "maybe"}, r"decode\.suppress_blank: expected a boolean"),
        ({"DWKIT_MODE": "fast"}, r"environment variable DWKIT_MODE: mode = \"fast\": choose one of"),
        ({"DWKIT_DEVICE": "tpu"}, r"environment variable DWKIT_DEVICE: device = \"tpu\""),
    ],
)
def test_bad_environment_values_name_the_variable(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_file(_toml(tmp_path, ""), env=env)


def test_model_path_is_found_next_to_the_config_file(tiny_en_dir, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_en_dir)
    config = Config.from_file(_toml(tmp_path, 'model = "models/tiny"\nbackend = "hf"'), env={})
    assert config.local_model_dir() == tmp_path / "models" / "tiny"
    assert config.resolve_model() == tmp_path / "models" / "tiny"


def test_backend_must_match_the_model_directory(tmp_path, tiny_en_dir):
    ct2_dir = _converted(tmp_path, "ct2", "int8")
    with pytest.raises(
        ConfigError, match=r"prod\.toml: backend = \"ggml\" does not match the model: .* ct2 format"
    ):
        Config.from_file(_toml(tmp_path, f'model = "{ct2_dir}"\nbackend = "ggml"'), env={})
    with pytest.raises(
        ConfigError, match=r"backend = \"ct2\" does not match .* hf format.*dwconvert --to ct2"
    ):
        Config.from_dict({"model": str(tiny_en_dir), "backend": "ct2"})
    from_env = {"DWKIT_BACKEND": "onnx"}
    with pytest.raises(ConfigError, match=r"^environment variable DWKIT_BACKEND: backend = \"onnx\""):
        Config.from_file(_toml(tmp_path, f'model = "{ct2_dir}"'), env=from_env)


def test_a_directory_that_is_no_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"prod\.toml: model: .*neither a dwkit model"):
        Config.from_file(_toml(tmp_path, f'model = "{tmp_path / "empty"}"'), env={})


@pytest.mark.parametrize(
    "backend, precision, message",
    [
        ("hf", "int8", r"precision = \"int8\" is not a hf precision; choose one of fp32, bf16, fp16"),
        ("hf", "fp16", r"precision = \"fp16\" with hf needs a CUDA device"),
        ("ct2", "fp16", r"not a ct2 precision; choose one of float32, float16"),
        ("ggml", "int8", r"not a ggml precision; choose one of f32, f16, q8_0"),
    ],
)
def test_precision_must_be_one_the_backend_has(backend, precision, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"backend": backend, "precision": precision}, source="svc.toml")


def test_onnx_and_ggml_run_at_their_converted_precision(tmp_path):
    onnx_dir = _converted(tmp_path, "onnx", "int8")
    with pytest.raises(ConfigError, match=r"holds onnx int8 weights .* set precision = \"int8\""):
        Config.from_dict({"model": str(onnx_dir), "backend": "onnx", "precision": "fp32"})
    assert (
        Config.from_dict({"model": str(onnx_dir), "backend": "onnx", "precision": "int8"}).precision == "int8"
    )


def test_trt_needs_a_gpu_and_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "nvidia_gpu_present", lambda: False)
    with pytest.raises(
        ConfigError, match=r"prod\.toml: backend = \"trt\": device cuda: no NVIDIA GPU visible"
    ):
        Config.from_file(_toml(tmp_path, 'backend = "trt"\ndevice = "cuda"'), env={})
    monkeypatch.setattr(devices, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=r"backend = \"trt\": needs TensorRT 10 .*dwkit\[gpu\]"):
        Config.from_file(_toml(tmp_path, 'backend = "trt"\ndevice = "cuda"'), env={})


def test_auto_picks_the_model_directorys_own_format_and_logs_why(tmp_path, caplog):
    pytest.importorskip("ctranslate2")
    ct2_dir = _converted(tmp_path, "ct2", "int8")
    with caplog.at_level(logging.INFO, logger="dwkit.config"):
        config = Config.from_file(_toml(tmp_path, f'model = "{ct2_dir}"'), env={})
    assert config.backend == "auto" and config.resolved_backend == "ct2"
    assert "backend auto: chose ct2" in caplog.text and "ct2 format" in caplog.text


def test_auto_falls_back_down_the_preference_list(tmp_path, caplog, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(devices, "nvidia_gpu_present", lambda: False)
    onnx_dir = _converted(tmp_path, "onnx", "fp32")
    with caplog.at_level(logging.INFO, logger="dwkit.config"):
        config = Config.from_dict({"model": str(onnx_dir)})
    assert runtimes.runners_of("onnx")[0].name == "trt"
    assert config.resolved_backend == "onnx"
    assert "skipped trt: the trt backend runs on an NVIDIA GPU only" in caplog.text


def test_auto_with_nothing_usable_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "backend_unavailable_reason", lambda name, device: "needs libfoo")
    with pytest.raises(
        ConfigError, match=r"backend = \"auto\": no backend for this ggml model .*ggml: needs libfoo"
    ):
        Config.from_dict({"model": str(_converted(tmp_path, "ggml", "f16"))}, source="svc.toml")


def test_a_hub_id_is_checked_once_resolved(tmp_path):
    config = Config.from_dict({"model": "org/not-downloaded", "backend": "ct2"})
    assert config.local_model_dir() is None and config.resolved_backend == "ct2"
    with pytest.raises(ConfigError, match="does not match"):
        config.check(_converted(tmp_path, "ggml", "f16"))


def test_importing_dwkit_and_its_config_stays_light():
    code = (
        "import sys, dwkit; from dwkit.config import Config; dwkit.load; "
        "Config.from_dict({'backend': 'ct2', 'decode': {'beam_size': 2}}); "
        "heavy = [m for m in ('torch', 'transformers', 'ctranslate2', 'onnxruntime', 'av') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
