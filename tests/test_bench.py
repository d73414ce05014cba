"""`dwkit bench`: the worker's fields, the RTFx/latency math, the baseline and its ratios,
spec errors, and the report files. Fast: a tiny random model, seconds of audio, repeat 1,
and no timing assertions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dwkit.bench.compare import add_ratios
from dwkit.bench.config import BenchConfig, load_toml, parse_backends
from dwkit.bench.goal import Goal, goal_status
from dwkit.bench.measure import CallTimer, EncoderShape, encoder_flops, percentile, summarise_latencies
from dwkit.bench.pool import launch_worker
from dwkit.bench.retry import best_floor, better, starved
from dwkit.bench.runner import run_bench
from dwkit.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
ISSUE_9_GOAL = REPO / "benchmarks" / "goals" / "issue_9.toml"
RUN_FIELDS = (
    "rtfx",
    "rtfx_per_repeat",
    "latency_p50_s",
    "latency_p95_s",
    "encoder_ms_per_window",
    "decoder_ms_per_token",
    "load_s",
    "peak_rss_mb",
    "cpu_seconds",
    "cpu_utilisation",
    "size_mb",
    "windows",
    "tokens",
    "tokens_per_window",
    "texts",
    "settings",
)


# -- math ---------------------------------------------------------------------------------------


def test_rtfx_is_total_audio_over_total_time_and_latency_percentiles_are_per_file():
    summary = summarise_latencies([10.0, 20.0], [[1.0, 2.0], [3.0, 4.0]])
    assert summary["audio_seconds"] == 60.0
    assert summary["transcription_seconds"] == 10.0
    assert summary["rtfx"] == 6.0
    assert summary["rtfx_per_repeat"] == [10.0, round(30 / 7, 3)]
    assert summary["latency_p50_s"] == 2.5
    assert summary["latency_p95_s"] == pytest.approx(3.85)


def test_percentile_interpolates_like_numpy():
    values = [0.3, 5.0, 1.2, 9.9, 2.4, 7.7, 4.1]
    for q in (0, 25, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_call_timer_counts_the_units_each_call_reports():
    timer = CallTimer(lambda batch: batch * 2, count=lambda args, _: len(args[0]))
    assert timer([1, 2, 3]) == [1, 2, 3, 1, 2, 3]
    timer([4])
    assert (timer.calls, timer.units) == (2, 4)
    timer.reset()
    assert (timer.calls, timer.units, timer.seconds) == (0, 0, 0.0)


def test_encoder_flops_of_distil_large_v3_5_are_about_2_3_tflop():
    from dwkit.synthetic import PRESETS

    dims = PRESETS["distil-large-v3.5"]
    shape = EncoderShape(
        n_mels=dims.n_mels, d_model=dims.d_model, layers=dims.encoder_layers, ffn_dim=dims.encoder_ffn_dim
    )
    assert 2.2e12 < encoder_flops(shape) < 2.35e12


# -- specs and config -------------------------------------------------------------------------


def test_baseline_is_always_first_and_specs_are_deduplicated():
    specs = parse_backends("ct2:int8,hf:bf16,ct2:int8")
    assert [s.label for s in specs] == ["hf fp32", "ct2 int8", "hf bf16"]
    assert [s.label for s in parse_backends("hf,hf:fp32,onnx")] == ["hf fp32", "onnx fp32"]
    assert [s.label for s in parse_backends("ggml")] == ["hf fp32", "ggml q8_0"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf,foo:int8", "unknown backend 'foo'"),
        ("ct2:int3", "unknown ct2 precision 'int3'"),
        ("ggml:q9", "unknown ggml precision 'q9'"),
    ],
)
def test_a_bad_backend_spec_is_a_one_line_error(spec, expected, random_tiny80_dir, capsys):
    from dwkit.cli.main import entry

    code = entry(["bench", "--model", str(random_tiny80_dir), "--backends", spec, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("dwkit: error: backend spec") and expected in err


def test_model_and_synthetic_model_are_exclusive():
    with pytest.raises(ConfigError, match="exactly one of --model and --synthetic-model"):
        BenchConfig(model="tiny.en", synthetic_model="distil-large-v3.5")
    assert BenchConfig(synthetic_model="distil-large-v3.5").tokens_per_window == 16


def test_committed_configs_load(tmp_path):
    configs = sorted((REPO / "benchmarks" / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        values = load_toml(path)
        assert values["backends"][0].label == "hf fp32"
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "tiny.en"\nrepeats = 2\n')
    with pytest.raises(ConfigError, match="unknown keys repeats"):
        load_toml(bad)


def _goal_result(reference_rtfx: float | None, encoder_ms: float = 150.0) -> dict[str, Any]:
    rows = [{"system": "dwkit", "label": "ct2 int8", "mode": "sequential", "rtfx": 30.0,
             "encoder_ms_per_window": encoder_ms}]  # fmt: skip
    if reference_rtfx is not None:
        rows.append({"system": "faster-whisper", "label": "faster-whisper int8", "mode": "sequential",
                     "rtfx": reference_rtfx, "encoder_ms_per_window": 90.0})  # fmt: skip
    architecture = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 2, "num_mel_bins": 128}
    return {
        "results": rows,
        "model": {"architecture": architecture},
        "floor": {"encoder_floor_ms_bf16": 100.0},
    }


def test_the_goal_comes_from_the_config_and_is_judged_on_the_run():
    goal = load_toml(REPO / "benchmarks" / "configs" / "distil_large_v3_5_synthetic.toml")["goal"]
    assert (goal.name, goal.reference, goal.speedup_min, goal.encoder_vs_bf16_floor_max) == (
        "issue 9",
        "faster-whisper int8",
        2.5,
        1.5,
    )
    met = goal_status(_goal_result(reference_rtfx=10.0), goal)
    assert met["met"] is True and met["architecture_matches"] is True
    assert met["speedup_vs_reference"] == 3.0 and met["encoder_vs_bf16_floor"] == 1.5
    slow = goal_status(_goal_result(reference_rtfx=15.0), goal)
    assert slow["met"] is False and slow["speedup_gap"] == 1.25
    assert goal_status(_goal_result(reference_rtfx=10.0, encoder_ms=160.0), goal)["met"] is False
    assert goal_status(_goal_result(reference_rtfx=None), goal)["met"] is None  # reference did not run
    assert goal_status(_goal_result(reference_rtfx=10.0), None) is None


def test_a_bad_goal_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown goal keys speedup"):
        Goal.load({"name": "x", "speedup": 2.0}, tmp_path)
    with pytest.raises(ConfigError, match="speedup_min needs a reference"):
        Goal.load({"name": "x", "speedup_min": 2.0}, tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        Goal.load("missing.toml", tmp_path)


def test_a_conversion_is_cached_once_for_parity_and_bench_alike(random_tiny80_dir, tmp_path):
    from dwkit.conversion_cache import cached_conversion, conversion_dir

    source = tmp_path / "source"
    shutil.copytree(random_tiny80_dir, source)
    made: list[Path] = []

    def convert(out: Path) -> dict[str, Any]:
        made.append(out)
        out.mkdir(parents=True)
        (out / "dwkit.json").write_text("{}")
        return {"seconds": 1.0}

    out, result = cached_conversion(source, "ct2", "int8", convert, tmp_path / "cache")
    again, cached = cached_conversion(source, "ct2", "int8", convert, tmp_path / "cache")
    assert (result, cached, again, made) == ({"seconds": 1.0}, None, out, [out])
    assert conversion_dir(source, "ct2", "float32", tmp_path / "cache") != out
    weights = source / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert conversion_dir(source, "ct2", "int8", tmp_path / "cache") != out  # the source changed


def test_peers_are_the_defaults_or_named_and_whisper_cpp_runs_each_ggml_file(random_tiny80_dir):
    pytest.importorskip("pywhispercpp")
    from dwkit.bench.convert import Conversions
    from dwkit.bench.plan import available_peers, plan_targets

    def plan(**settings: Any) -> list[tuple[str, str, str]]:
        config = BenchConfig(
            model=str(random_tiny80_dir), backends=parse_backends("ggml:q8_0,ggml:f16"), **settings
        )
        targets = plan_targets(config, random_tiny80_dir, Conversions(), available_peers(config))
        return [(t.system, t.label, t.mode) for t in targets]

    dwkit_rows = [("dwkit", label, "sequential") for label in ("hf fp32", "ggml q8_0", "ggml f16")]
    assert plan(peers=["whisper.cpp"], modes=("sequential",)) == dwkit_rows + [
        ("whisper.cpp", "whisper.cpp q8_0", "sequential"),
        ("whisper.cpp", "whisper.cpp f16", "sequential"),
    ]
    assert not any(system == "whisper.cpp" for system, _, _ in plan(peers=True))  # named only
    assert plan(peers=["whisper.cpp"], modes=("sequential",), tokens_per_window=4) == dwkit_rows
    with pytest.raises(ConfigError, match="peers whisper: choose from faster-whisper"):
        BenchConfig(model="tiny.en", peers=["whisper"])


# -- the worker -------------------------------------------------------------------------------


def test_worker_returns_every_field_and_decodes_exactly_n_tokens_per_window(random_tiny80_dir, speech_short):
    from dwkit.bench.worker import run_job

    result = run_job(
        {
            "kind": "run",
            "system": "dwkit",
            "backend": "hf",
            "precision": "fp32",
            "model_dir": str(random_tiny80_dir),
            "mode": "sequential",
            "audio": [str(speech_short[0])],
            "repeat": 1,
            "threads": 1,
            "language": "en",
            "tokens_per_window": 3,
            "warmup": False,
        }
    )
    assert "error" not in result, result
    for name in RUN_FIELDS:
        assert name in result, name
    assert result["windows"] == 1  # 7.6 s of audio: one window, never split in forced mode
    assert result["tokens"] == 3 and result["tokens_per_window"] == 3.0
    assert result["rtfx"] > 0 and result["encoder_ms_per_window"] > 0 and result["decoder_ms_per_token"] > 0
    assert result["latency_p50_s"] <= result["latency_p95_s"]
    assert result["size_mb"] > 0 and result["peak_rss_mb"] > 0


def test_whisper_cpp_transcribes_the_ggml_file_as_a_peer(tiny_en_dir, speech_short, simple_wer):
    pytest.importorskip("pywhispercpp")
    from dwkit.bench.worker import run_job
    from dwkit.parity import converted_candidate

    ggml = converted_candidate(tiny_en_dir, "ggml", "f16").path  # the conversion parity_tests reuses
    audio, spoken = speech_short
    job = {"kind": "run", "system": "whisper.cpp", "backend": "ggml", "precision": "f16", "model_dir": str(ggml),
           "mode": "sequential", "audio": [str(audio)], "repeat": 1, "threads": 1, "language": "en", "warmup": False}  # fmt: skip
    result = run_job(job)
    assert "error" not in result, result
    assert result["rtfx"] > 0 and result["encoder_ms_per_window"] is None  # one C call: not split
    assert simple_wer(spoken, result["texts"][0]) < 0.3


def test_a_worker_failure_comes_back_as_one_line():
    result = launch_worker({"kind": "no-such-job"}, 120)
    assert "unknown job kind 'no-such-job'" in result["error"]
    assert "\n" not in result["error"]


# -- ratios and reports -----------------------------------------------------------------------


def test_ratios_are_taken_against_the_baseline_of_the_same_mode():
    rows = [
        {"system": "dwkit", "label": "hf fp32", "mode": "sequential", "rtfx": 10.0, "encoder_ms_per_window": 400.0,
         "decoder_ms_per_token": 20.0, "peak_rss_mb": 500.0, "size_mb": 150.0},
        {"system": "dwkit", "label": "ct2 int8", "mode": "sequential", "rtfx": 25.0, "encoder_ms_per_window": 100.0,
         "decoder_ms_per_token": 5.0, "peak_rss_mb": 250.0, "size_mb": 45.0},
        {"system": "dwkit", "label": "hf fp32", "mode": "chunked", "rtfx": 20.0, "encoder_ms_per_window": 400.0,
         "decoder_ms_per_token": 20.0, "peak_rss_mb": 500.0, "size_mb": 150.0},
        {"system": "dwkit", "label": "ct2 int8", "mode": "chunked", "rtfx": 25.0, "encoder_ms_per_window": 100.0,
         "decoder_ms_per_token": 5.0, "peak_rss_mb": 250.0, "size_mb": 45.0},
        {"system": "dwkit", "label": "onnx fp32", "mode": "chunked", "error": "conversion failed"},
    ]  # fmt: skip
    add_ratios(rows)
    assert rows[0]["vs_baseline"]["speedup"] == 1.0
    assert rows[1]["vs_baseline"] == {
        "speedup": 2.5,
        "encoder_speedup": 4.0,
        "decoder_speedup": 4.0,
        "peak_rss": 0.5,
        "size": 0.3,
    }
    assert rows[3]["vs_baseline"]["speedup"] == 1.25  # against the chunked baseline
    assert rows[4]["vs_baseline"] is None


def test_a_row_starved_by_a_busy_machine_is_recognised_and_the_better_run_kept():
    assert starved({"cpu_utilisation": 0.5, "loadavg_1m": [3.0, 4.1]}, threads=2)
    assert not starved({"cpu_utilisation": 0.5, "loadavg_1m": [0.9, 1.2]}, threads=2)  # its own idle threads
    assert not starved({"cpu_utilisation": 0.95, "loadavg_1m": [5.0, 5.0]}, threads=2)
    kept = better({"rtfx": 1.0, "cpu_utilisation": 0.5}, {"rtfx": 2.0, "cpu_utilisation": 0.9})
    assert kept["rtfx"] == 2.0 and [a["rtfx"] for a in kept["attempts"]] == [1.0, 2.0]
    floor = best_floor(
        {"fp32_gflops": 90.0, "bf16_gflops": 400.0}, {"fp32_gflops": 190.0, "bf16_gflops": 200.0}
    )
    assert (floor["fp32_gflops"], floor["bf16_gflops"]) == (190.0, 400.0) and len(floor["measurements"]) == 2


def _fake_launcher(calls: list[dict[str, Any]]):
    """Stands in for the worker process: canned numbers, faster for hf bf16 than hf fp32."""

    def launch(job: dict[str, Any], timeout: float) -> dict[str, Any]:
        calls.append(job)
        if job["kind"] == "floor":
            return {"size": 4096, "threads": 2, "fp32_gflops": 300.0, "bf16_gflops": 1200.0}
        if job["kind"] == "convert":
            return {"out_dir": job["out_dir"], "seconds": 1.0, "size_mb": 40.0}
        fast = job["precision"] != "fp32"
        latency = 1.0 if fast else 2.0
        return {
            **summarise_latencies([8.0], [[latency]] * job["repeat"]),
            "load_s": 0.5,
            "encoder_ms_per_window": 100.0 if fast else 300.0,
            "decoder_ms_per_token": 10.0,
            "windows": 1,
            "tokens": 16,
            "tokens_per_window": 16.0,
            "peak_rss_mb": 300.0,
            "size_mb": 150.0,
            "texts": ["the same words"],
            "settings": {},
        }

    return launch


def _fake_run(model_dir: Path, audio: Path, tmp_path: Path, calls: list[dict[str, Any]], **settings: Any):
    """run_bench on the fake launcher, writing under tmp_path, without peers."""
    config = BenchConfig(
        model=str(model_dir),
        audio=[audio],
        output=tmp_path / "out",
        peers=False,
        cache_dir=tmp_path / "cache",
        **settings,
    )
    return run_bench(config, progress=False, launch=_fake_launcher(calls))


def test_the_baseline_is_always_run_and_reports_are_written(random_tiny80_dir, speech_short, tmp_path):
    calls: list[dict[str, Any]] = []
    result = _fake_run(
        random_tiny80_dir,
        speech_short[0],
        tmp_path,
        calls,
        backends=parse_backends("hf:bf16,ct2:int8"),
        repeat=2,
        name="fake",
        goal=Goal.load(str(ISSUE_9_GOAL), REPO),
    )
    runs = [c for c in calls if c["kind"] == "run"]
    assert [(c["backend"], c["precision"], c["mode"]) for c in runs] == [
        ("hf", "fp32", "sequential"),
        ("hf", "bf16", "sequential"),
        ("ct2", "int8", "sequential"),
        ("hf", "fp32", "chunked"),
        ("hf", "bf16", "chunked"),
        ("ct2", "int8", "chunked"),
    ]
    assert [c["format"] for c in calls if c["kind"] == "convert"] == ["ct2"]
    bf16 = next(r for r in result["results"] if r["label"] == "hf bf16" and r["mode"] == "chunked")
    assert bf16["vs_baseline"]["speedup"] == 2.0
    assert "wer_vs_baseline" not in bf16  # random weights: a WER would mean nothing
    assert result["worker_env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert result["machine"]["cores"] and "cpu" in result["machine"]
    assert result["floor"]["encoder_floor_ms_bf16"] > 0
    assert result["goal"]["architecture_matches"] is False
    for kind in ("json", "markdown", "chart"):
        assert Path(result["files"][kind]).is_file(), kind
    written = json.loads((tmp_path / "out" / "fake.json").read_text())
    assert written["results"][0]["label"] == "hf fp32"
    table = (tmp_path / "out" / "fake.md").read_text()
    assert "| dwkit hf bf16 | chunked | 8.00 | 2.00x |" in table
    assert "Goal (issue 9)" in table


def test_bench_cli_runs_real_workers_end_to_end(random_tiny80_dir, speech_short, tmp_path):
    from dwkit.cli.main import entry

    code = entry(
        [
            "bench",
            "--model",
            str(random_tiny80_dir),
            "--backends",
            "hf",
            "--modes",
            "sequential",
            "--audio",
            str(speech_short[0]),
            "--repeat",
            "2",
            "--threads",
            "1",
            "--tokens-per-window",
            "2",
            "--no-peers",
            "--no-floor",
            "--no-progress",
            "--output",
            str(tmp_path),
            "--name",
            "e2e",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "e2e.json").read_text())
    (row,) = result["results"]
    assert "error" not in row, row
    # repeat 2: the worker served start, two repeats and finish (the interleaved protocol)
    assert row["label"] == "hf fp32" and len(row["latencies_s"]) == 2
    assert row["tokens"] == 4 and row["tokens_per_window"] == 2.0 and row["vs_baseline"]["speedup"] == 1.0
    assert (tmp_path / "e2e.md").is_file() and (tmp_path / "e2e.png").is_file()


def test_a_run_without_a_goal_reports_none(random_tiny80_dir, speech_short, tmp_path):
    from dwkit.bench.report import markdown

    result = _fake_run(random_tiny80_dir, speech_short[0], tmp_path, [], repeat=1, name="nogoal")
    assert result["goal"] is None
    assert "Goal" not in markdown(result) and "| dwkit hf fp32 | sequential |" in markdown(result)
