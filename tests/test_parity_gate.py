"""The parity gate passes faithful conversions, fails corrupted ones with a readable reason,
writes JSON and JUnit XML that parse, and its CLI exits non-zero on failure."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from dwkit.cli.main import entry
from dwkit.errors import ConfigError, ModelError
from dwkit.parity import (
    METRICS,
    AudioSet,
    Candidate,
    Check,
    ParityConfig,
    ParityGate,
    run_parity,
    timestamp_deviation,
    window_agreement,
)
from dwkit.results import Segment

REPO = Path(__file__).resolve().parent.parent
CI_THRESHOLDS = REPO / "ci" / "parity.toml"
# Modes the model-level tests run: all three on ~8 s of speech (one window each) stays fast.
MODES = ("short", "sequential", "chunked")
CASES_PER_CANDIDATE = 1 + 2 * len(MODES)  # numerics + (tokens, transcripts) per mode


# --- helpers -------------------------------------------------------------------------------


def corrupt_hf(
    source: Path, out: Path, relative_noise: float = 0.3, pattern: str = "encoder.layers.2.fc"
) -> Path:
    """A copy of a transformers checkpoint with Gaussian noise added to some weights, as a
    broken conversion would: the same shapes and names, slightly wrong numbers."""
    from safetensors.numpy import load_file, save_file

    out.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            shutil.copy2(path, out / path.name)
    tensors = load_file(source / "model.safetensors")
    rng = np.random.default_rng(0)
    hit = 0
    for name, value in tensors.items():
        if pattern in name and name.endswith("weight"):
            tensors[name] = (value + rng.standard_normal(value.shape) * value.std() * relative_noise).astype(
                value.dtype
            )
            hit += 1
    assert hit, f"no tensor matched {pattern}"
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


def corrupt_ct2(model_dir: Path, out: Path, variable: str = "encoder/layer_2/ffn/linear_0/weight") -> Path:
    """A copy of a CTranslate2 float32 model with noise written into one variable of model.bin
    (located through the format: name, rank, dims, dtype, byte count, data)."""
    shutil.copytree(model_dir, out)
    blob = bytearray((out / "model.bin").read_bytes())
    name = variable.encode() + b"\0"
    at = blob.find(struct.pack("<H", len(name)) + name)
    assert at >= 0, f"{variable} not in model.bin"
    at += 2 + len(name)
    rank = blob[at]
    at += 1 + 4 * rank
    dtype = blob[at]
    assert dtype == 0, "expected a float32 variable"
    (size,) = struct.unpack_from("<I", blob, at + 1)
    at += 5
    values = np.frombuffer(bytes(blob[at : at + size]), dtype="<f4").copy()
    values += np.random.default_rng(0).standard_normal(values.shape).astype(np.float32) * values.std() * 0.3
    blob[at : at + size] = values.tobytes()
    (out / "model.bin").write_bytes(bytes(blob))
    return out


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = entry(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fail_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("FAIL ")]


# --- configuration, specs and measures (no model) --------------------------------------------


def test_fp32_defaults_are_the_designs_tolerances():
    config = ParityConfig.load()
    for alias in ("fp32", "float32", "f32"):
        name, limits = config.thresholds("ct2", alias)
        assert name == "fp32"
        assert limits["logits_max_abs"] == 1e-3
        assert limits["token_match_min"] == 1.0
        assert limits["wer_max"] == 0.0
        assert limits["timestamp_max_abs"] == 0.02


@pytest.mark.parametrize(
    "precision", ["fp16", "float16", "f16", "bf16", "int8", "int8_float32", "q8_0", "q5_0", "q4_0"]
)
def test_every_lower_precision_has_looser_limits(precision):
    config = ParityConfig.load()
    _, fp32 = config.thresholds("onnx", "fp32")
    _, limits = config.thresholds("onnx", precision)
    assert limits["wer_max"] > fp32["wer_max"]
    assert limits["logits_max_abs"] > fp32["logits_max_abs"]
    assert set(limits) <= set(METRICS)


def test_backend_override_applies_to_that_backend_only():
    config = ParityConfig.load()
    assert (
        config.thresholds("ggml", "f16")[1]["logits_max_abs"]
        > config.thresholds("onnx", "fp16")[1]["logits_max_abs"]
    )


def test_repository_ci_file_overrides_the_packaged_defaults():
    default, ci = ParityConfig.load(), ParityConfig.load(CI_THRESHOLDS)
    assert ci.sources[-1] == str(CI_THRESHOLDS)
    assert ci.thresholds("onnx", "fp16")[1]["wer_max"] < default.thresholds("onnx", "fp16")[1]["wer_max"]
    assert ci.thresholds("onnx", "fp32") == default.thresholds("onnx", "fp32")  # untouched keys stay
    assert ci.runtime_options("ggml") == {"flash_attn": False}


def test_user_table_takes_over_a_precision(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[thresholds.q8]\nprecisions = ["q8_0"]\nwer_max = 0.001\n')
    config = ParityConfig.load(path)
    assert config.thresholds("ggml", "q8_0") == ("q8", {"wer_max": 0.001})
    assert config.thresholds("ct2", "int8")[0] == "int8"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[thresholds.fp32]\nwer_maximum = 0.1\n", "unknown threshold 'wer_maximum'"),
        ("[thresholds.fp32]\nwer_max = 'low'\n", "wer_max must be a number"),
        ("[limits]\nx = 1\n", "unknown section"),
        ("[longform]\nchunk_length = 20\n", "[longform]"),
        ("[thresholds.fp32\n", "not valid TOML"),
        ("[words]\ntolerance_s = -1\n", "tolerance_s must be"),
        ("[words]\nwidth = 3\n", "takes tolerance_s and"),
        ("[words.limits.fp32]\nword_match = 1.0\n", "unknown threshold 'word_match'"),
    ],
)
def test_bad_thresholds_file_is_refused_with_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        ParityConfig.load(path)
    assert message in str(info.value)


def test_unknown_precision_lists_known_ones():
    with pytest.raises(ConfigError, match="no parity thresholds for precision 'int3'.*fp32"):
        ParityConfig.load().thresholds("ct2", "int3")


def test_longform_settings_are_greedy_and_deterministic():
    options = ParityConfig.load().longform("short")
    assert options.mode == "sequential"
    assert options.temperatures == (0.0,)
    assert options.no_speech_threshold is None and options.compression_ratio_threshold is None
    assert ParityConfig.load().longform("chunked").mode == "chunked"


@pytest.mark.parametrize(
    "spec, backend, path, precision",
    [
        ("ct2:/models/tiny-ct2:int8", "ct2", "/models/tiny-ct2", "int8"),
        ("onnx:relative/dir", "onnx", "relative/dir", None),
        ("ggml:/a/b:q5_0", "ggml", "/a/b", "q5_0"),
        ("hf:/ckpt:bf16", "hf", "/ckpt", "bf16"),
    ],
)
def test_candidate_spec_parses(spec, backend, path, precision):
    candidate = Candidate.parse(spec)
    assert (candidate.backend, str(candidate.path), candidate.precision) == (backend, path, precision)


@pytest.mark.parametrize("spec", ["tiny-ct2", "mlx:/x", "ct2:", ":/x"])
def test_bad_candidate_spec_names_the_format(spec):
    with pytest.raises(ConfigError, match=r"expected BACKEND:PATH\[:PRECISION\]"):
        Candidate.parse(spec)


def test_window_agreement_counts_windows_and_finds_the_first_divergence():
    ref = [[[1, 2, 3], [4, 5]], [[7]]]
    same = window_agreement(ref, ref)
    assert same == {"windows": 3, "windows_equal": 3, "match_rate": 1.0, "first_divergence": None}
    cand = [[[1, 2, 3], [4, 9]], [[7], [8]]]  # window 1 differs at token 1; clip 1 has an extra window
    result = window_agreement(ref, cand)
    assert result["windows"] == 4 and result["windows_equal"] == 2
    assert result["first_divergence"] == {"clip": 0, "window": 1, "token": 1}


def _segments(*spans: tuple[float, float, str]) -> list[Segment]:
    return [Segment(start, end, text) for start, end, text in spans]


def test_timestamp_deviation_matches_segments_by_text():
    ref = _segments((0.0, 2.0, " One two."), (2.0, 4.0, " Three four."), (4.0, 6.0, " Five six."))
    cand = _segments(
        (0.0, 2.1, " One two."), (2.1, 4.0, " Three, four!"), (4.0, 5.0, " Five"), (5.0, 6.2, " six.")
    )
    result = timestamp_deviation(ref, cand)
    assert result["matched"] == 2 and result["unmatched"] == 3
    assert result["max_abs"] == pytest.approx(0.1)
    assert result["mean_abs"] == pytest.approx(0.05)
    assert timestamp_deviation([], [])["max_abs"] == 0.0
    assert timestamp_deviation(ref, [])["max_abs"] == float("inf")


def test_failed_check_says_which_limit_and_by_how_much():
    assert Check("wer_max", 0.05, 0.0).describe() == "wer_max: 0.05 > 0 (over by 0.05)"
    assert Check("token_match_min", 0.5, 1.0).describe() == "token_match_min: 0.5 < 1 (under by 0.5)"
    assert Check("logits_max_abs", 2e-4, 1e-3).passed
    assert Check("encoder_max_abs", None, 1e-2).passed  # n/a is not a failure
    assert Check("encoder_max_abs", None, 1e-2).describe() == "encoder_max_abs: n/a"
    assert Check("timestamp_max_abs", 0.02 + 1e-12, 0.02).passed  # float noise on a 20 ms step


# --- the gate on real tiny.en -------------------------------------------------------------


@pytest.fixture(scope="module")
def short_audio(speech_short) -> AudioSet:  # type: ignore[no-untyped-def]
    return AudioSet.from_files([speech_short[0]])


@pytest.fixture(scope="module")
def corrupted_hf(tiny_en_dir, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return corrupt_hf(tiny_en_dir, tmp_path_factory.mktemp("corrupt") / "tiny.en-corrupt")


@pytest.fixture(scope="module")
def hf_report(tiny_en_dir, corrupted_hf, short_audio):  # type: ignore[no-untyped-def]
    """One gate run: the checkpoint against itself, and against its corrupted copy."""
    return run_parity(
        tiny_en_dir, [f"hf:{tiny_en_dir}", f"hf:{corrupted_hf}"], audio=short_audio, modes=MODES
    )


def test_faithful_candidate_passes_every_level_and_mode(hf_report):
    faithful = hf_report.candidates[0]
    assert faithful.passed, faithful.results
    assert [(r.level, r.mode) for r in faithful.results] == [("numerics", None)] + [
        (level, mode) for mode in MODES for level in ("tokens", "transcripts")
    ]
    numerics = faithful.results[0]
    assert {c.metric: c.value for c in numerics.checks}["logits_max_abs"] == 0.0


def test_corrupted_weights_fail_with_readable_reasons(hf_report):
    corrupted = hf_report.candidates[1]
    assert not corrupted.passed and not hf_report.passed
    failed = {(r.level, r.mode) for r in corrupted.results if not r.passed}
    assert ("numerics", None) in failed
    assert any(level == "transcripts" for level, _ in failed)
    lines = hf_report.failures()
    assert lines and all(line.startswith(f"FAIL {corrupted.label} ") for line in lines)
    assert any("logits_max_abs:" in line and "> 0.001 (over by" in line for line in lines)


def test_json_report_round_trips(hf_report, tmp_path):
    path = tmp_path / "parity.json"
    path.write_text(json.dumps(hf_report.to_dict()))
    data = json.loads(path.read_text())
    assert data["passed"] is False
    assert [c["passed"] for c in data["candidates"]] == [True, False]
    assert data["failures"] == hf_report.failures()
    assert data["thresholds_files"][0].endswith("parity_thresholds.toml")
    assert len(data["candidates"][1]["results"]) == CASES_PER_CANDIDATE
    assert set(data["baseline"]["transcripts"]) == set(MODES)


def test_junit_has_a_testcase_per_candidate_level_and_mode(hf_report):
    root = ET.fromstring(hf_report.junit_xml())
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 2 * CASES_PER_CANDIDATE
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(root.get("failures")) == len(failures) > 0
    assert all(c.get("classname").startswith("parity.hf:tiny.en-corrupt") for c in failures)
    assert {c.get("name") for c in cases} == {"numerics"} | {
        f"{lvl}[{m}]" for m in MODES for lvl in ("tokens", "transcripts")
    }
    assert "over by" in failures[0].find("failure").get("message")


def test_cli_passes_and_writes_reports(tiny_en_dir, speech_short, tmp_path, capsys):
    out_json, out_xml = tmp_path / "p.json", tmp_path / "p.xml"
    code, out, err = run_cli(
        "parity", "--model", str(tiny_en_dir), "--candidate", f"hf:{tiny_en_dir}", "--audio", str(speech_short[0]),
        "--modes", "short", "--json", str(out_json), "--junit", str(out_xml), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "parity: passed" in out and "numerics" in out
    assert "parity:" in err  # the progress bar
    assert json.loads(out_json.read_text())["passed"] is True
    assert len(ET.parse(out_xml).getroot().findall("./testsuite/testcase")) == 3


def test_cli_fails_with_one_line_per_failed_threshold(
    tiny_en_dir, corrupted_hf, speech_short, tmp_path, capsys
):
    code, out, err = run_cli(
        "parity", "--model", str(tiny_en_dir), "--candidate", f"hf:{corrupted_hf}", "--audio", str(speech_short[0]),
        "--modes", "short", "--no-progress", "--junit", str(tmp_path / "p.xml"), capsys=capsys,
    )  # fmt: skip
    assert code == 1
    lines = fail_lines(err)
    assert lines and len(lines) == len(err.strip().splitlines())
    assert all(line.startswith("FAIL hf:tiny.en-corrupt:fp32 ") for line in lines)
    assert "parity: FAILED" in out
    assert ET.parse(tmp_path / "p.xml").getroot().get("failures") != "0"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tiny-ct2", "expected BACKEND:PATH[:PRECISION]"),
        ("ct2:/no/such/model", "no such model directory"),
        ("hf:{model}:int4", "hf precision 'int4'; choose one of fp32"),
        ("ct2:{model}", "is a hf model, not ct2"),
    ],
)
def test_bad_candidate_is_a_one_line_error(tiny_en_dir, capsys, spec, message):
    code, out, err = run_cli(
        "parity", "--model", str(tiny_en_dir), "--candidate", spec.format(model=tiny_en_dir), capsys=capsys
    )
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dwkit: error: ") and message in err
    assert out == ""


def test_candidate_that_does_not_load_fails_every_case_with_an_error(tiny_en_dir, short_audio, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "generation_config.json", "preprocessor_config.json"):
        if (tiny_en_dir / name).is_file():
            shutil.copy2(tiny_en_dir / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    report = run_parity(tiny_en_dir, [f"hf:{broken}"], audio=short_audio, modes=("short",))
    assert not report.passed
    assert all(r.error and r.error.startswith("could not load:") for r in report.results)
    root = ET.fromstring(report.junit_xml())
    assert root.get("errors") == "3" and len(root.findall("./testsuite/testcase/error")) == 3


def test_bad_modes_are_a_one_line_error(tiny_en_dir, capsys):
    code, _, err = run_cli(
        "parity",
        "--model",
        str(tiny_en_dir),
        "--candidate",
        f"hf:{tiny_en_dir}",
        "--modes",
        "short,fast",
        capsys=capsys,
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--modes" in err


def test_baseline_must_be_a_transformers_checkpoint(tmp_path):
    (tmp_path / "dwkit.json").write_text('{"format": "ct2"}')
    with pytest.raises(ModelError, match="baseline must be a transformers checkpoint"):
        ParityGate(tmp_path, audio=AudioSet([], []))


# --- converted models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ct2_f32(tiny_en_dir, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2")
    from dwkit.converters import convert

    out = tmp_path_factory.mktemp("ct2") / "tiny.en-ct2"
    convert(tiny_en_dir, out, "ct2", "float32", validate=False)
    return out


def test_ct2_float32_passes_and_corrupted_model_bin_fails(tiny_en_dir, tiny_ct2_f32, short_audio, tmp_path):
    broken = corrupt_ct2(tiny_ct2_f32, tmp_path / "tiny.en-ct2-corrupt")
    report = run_parity(
        tiny_en_dir,
        [f"ct2:{tiny_ct2_f32}", f"ct2:{broken}"],
        audio=short_audio,
        modes=("short", "sequential"),
    )
    good, bad = report.candidates
    assert good.precision == "float32" and good.table == "fp32"
    assert good.passed, [r.failures() for r in good.results]
    assert not bad.passed
    assert any("encoder_max_abs:" in line for line in report.failures())


@pytest.mark.slow
def test_ggml_f16_passes_with_encoder_metrics_not_available(tiny_en_dir, short_audio, tmp_path):
    pytest.importorskip("pywhispercpp")
    from dwkit.converters import convert

    out = tmp_path / "tiny.en-ggml"
    convert(tiny_en_dir, out, "ggml", "f16", validate=False)
    report = run_parity(
        tiny_en_dir, [f"ggml:{out}"], audio=short_audio, config=ParityConfig.load(CI_THRESHOLDS)
    )
    numerics = report.candidates[0].results[0]
    values = {c.metric: c.value for c in numerics.checks}
    assert values["encoder_max_abs"] is None and values["logits_max_abs"] is not None
    assert "encoder_max_abs" in numerics.details["not_available"]
    assert report.passed, report.failures()


@pytest.mark.slow
def test_onnx_fp32_passes_and_corrupted_conversion_fails(tiny_en_dir, corrupted_hf, short_audio, tmp_path):
    pytest.importorskip("onnxruntime")
    from dwkit.converters import convert

    good, bad = tmp_path / "onnx-good", tmp_path / "onnx-corrupt"
    convert(tiny_en_dir, good, "onnx", "fp32", validate=False, progress=False)
    # A conversion of the wrong (corrupted) weights: the onnx files are fine, their numbers are not.
    convert(corrupted_hf, bad, "onnx", "fp32", validate=False, progress=False)
    report = run_parity(tiny_en_dir, [f"onnx:{good}", f"onnx:{bad}"], audio=short_audio, modes=("short",))
    assert report.candidates[0].passed, report.failures()
    assert not report.candidates[1].passed


# --- parity_tests/, the pytest form of the gate -------------------------------------------------


def _pytest_parity_tests(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DWKIT_PARITY_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "parity_tests", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_parity_tests_collect_a_case_per_candidate_level_and_mode(tiny_en_dir):
    configured = _pytest_parity_tests(
        "--collect-only",
        env={
            "DWKIT_PARITY_MODEL": str(tiny_en_dir),
            "DWKIT_PARITY_CANDIDATES": f"hf:{tiny_en_dir},ct2:/x:int8",
        },
    )
    ids = [line for line in configured.stdout.splitlines() if "test_parity[" in line]
    assert len(ids) == 2 * CASES_PER_CANDIDATE, configured.stdout + configured.stderr
    assert any("ct2:/x:int8-transcripts-chunked" in line for line in ids)
    built = _pytest_parity_tests("--collect-only", env={})
    # one built-in candidate per backend that declares a parity precision
    from dwkit.parity.conversions import self_test_precisions

    own = len(self_test_precisions())
    assert sum("test_parity[auto:" in line for line in built.stdout.splitlines()) == own * CASES_PER_CANDIDATE
    orphan = _pytest_parity_tests("--collect-only", "--dwkit-candidate", f"hf:{tiny_en_dir}", env={})
    assert orphan.returncode != 0 and "no baseline model" in orphan.stderr


def test_parity_tests_pass_a_faithful_candidate_and_write_json(tiny_en_dir, speech_short, tmp_path):
    report = tmp_path / "report.json"
    result = _pytest_parity_tests(
        "--dwkit-model", str(tiny_en_dir), "--dwkit-candidate", f"hf:{tiny_en_dir}",
        "--dwkit-audio", str(speech_short[0]), "--dwkit-modes", "short", "--dwkit-json", str(report),
        env={"DWKIT_CACHE": os.environ["DWKIT_CACHE"]},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout
    assert json.loads(report.read_text())["passed"] is True
