"""`dwkit bench --device`: the device reaches every job and peer, GPU-only precisions are refused
on the CPU, backends a GPU machine cannot run are skipped rows, the report names the GPU, and the
prepared GPU script refuses a machine without one. The GPU-only checks at the end need CUDA."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dwkit.bench import measure
from dwkit.bench.config import BenchConfig, load_toml, merged, parse_backends
from dwkit.bench.convert import Conversions
from dwkit.bench.measure import summarise_latencies
from dwkit.bench.plan import plan_targets, wanted_conversions
from dwkit.bench.pool import _run_job
from dwkit.bench.report import markdown
from dwkit.bench.runner import run_bench
from dwkit.bench.worker import faster_whisper_model_kwargs
from dwkit.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
GPU_CONFIG = REPO / "benchmarks" / "configs" / "gpu_distil_large_v3_5.toml"
TRT_MISSING = "needs TensorRT 10 (the tensorrt package, from NVIDIA's index): pip install 'dwkit[gpu]'"


def _config(backends: str, device: str = "cuda", **settings: Any) -> BenchConfig:
    settings.setdefault("model", "tiny.en")
    return BenchConfig(backends=parse_backends(backends), device=device, **settings)


# -- configuration ----------------------------------------------------------------------------


def test_the_gpu_config_runs_on_cuda_and_the_flag_overrides_it():
    values = load_toml(GPU_CONFIG)
    config = merged(values, {})
    assert config.device == "cuda" and config.budget_s == 400
    assert {"hf:fp16", "ct2:float16", "ct2:int8_float16", "onnx:fp16", "trt:fp16"} <= {
        s.text for s in config.backends
    }
    assert merged(values, {"device": "cuda:1"}).device == "cuda:1"
    assert BenchConfig(model="tiny.en").device == "cpu"


def test_the_device_flag_reaches_the_config():
    import argparse

    from dwkit.cli import bench

    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "--model", "tiny.en", "--backends", "hf:fp16", "--device", "cuda"])
    config = bench.config_from_args(args)
    assert config.device == "cuda" and config.backends[1].text == "hf:fp16"


@pytest.mark.parametrize(
    ("backends", "device", "expected"),
    [
        ("hf:fp16", "cpu", "backend spec 'hf:fp16': fp16 with hf needs a CUDA device; on CPU use fp32, bf16"),
        (
            "trt:fp16",
            "cpu",
            "backend spec 'trt:fp16': the trt backend runs on cuda only, not on --device cpu",
        ),
        ("hf:fp16+ct2:int8", "cpu", "backend spec 'hf:fp16+ct2:int8': fp16 with hf needs a CUDA device"),
        ("ggml:q8_0", "cuda", "the ggml backend runs on cpu only, not on --device cuda"),
        ("hf", "gpu", "--device 'gpu': use cpu, cuda or cuda:N"),
    ],
)
def test_a_system_the_device_cannot_run_is_one_config_error(backends, device, expected):
    with pytest.raises(ConfigError) as caught:
        _config(backends, device)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_gpu_precisions_are_accepted_on_cuda():
    config = _config("hf:fp16,ct2:float16,ct2:int8_float16,onnx:fp16,trt:fp16,hf:bf16+ct2:int8_float16")
    assert len(config.backends) == 7


def test_the_whisper_cpp_peer_is_refused_on_cuda():
    with pytest.raises(ConfigError, match="peer whisper.cpp runs on cpu only, not on --device cuda"):
        _config("hf", peers=["whisper.cpp"])


def test_a_budget_needs_one_system_at_a_time():
    with pytest.raises(ConfigError, match="--no-interleave"):
        _config("hf", budget_s=60, repeat=2)
    assert _config("hf", budget_s=60, repeat=2, interleave=False).budget_s == 60


def test_a_gpu_precision_on_the_cpu_is_one_line_from_the_cli(random_tiny80_dir, capsys):
    from dwkit.cli.main import entry

    code = entry(["bench", "--model", str(random_tiny80_dir), "--backends", "hf:fp16", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "fp16 with hf needs a CUDA device" in err and "--device cuda" in err


# -- planning ---------------------------------------------------------------------------------


def _conversions(tmp_path: Path, *keys: tuple[str, str]) -> Conversions:
    return Conversions(dirs={key: tmp_path / "-".join(key) for key in keys})


def test_peers_run_in_gpu_precisions_and_every_job_carries_the_device(tmp_path):
    config = _config("hf:fp16,ct2:int8_float16,trt:fp16", modes=("sequential", "chunked"))
    peers = ["faster-whisper", "transformers-pipeline"]
    assert wanted_conversions(config, peers) == [
        ("ct2", "float16"),
        ("ct2", "int8_float16"),
        ("onnx", "fp16"),  # trt builds its engines from the onnx export
    ]
    conversions = _conversions(tmp_path, ("ct2", "float16"), ("ct2", "int8_float16"), ("onnx", "fp16"))
    targets = plan_targets(config, tmp_path, conversions, peers)
    sequential = [t.label for t in targets if t.mode == "sequential"]
    # faster-whisper's GPU choice (float16) and the ct2 spec's type; trt last (it builds at load)
    assert sequential == [
        "hf fp32",
        "hf fp16",
        "ct2 int8_float16",
        "faster-whisper float16",
        "faster-whisper int8_float16",
        "trt fp16",
    ]
    assert "transformers-pipeline fp16" in [t.label for t in targets if t.mode == "chunked"]
    jobs = [_run_job(t, config, [tmp_path / "a.wav"], 4) for t in targets]
    assert {job["device"] for job in jobs} == {"cuda"}
    faster = next(j for j in jobs if j["system"] == "faster-whisper")
    assert faster_whisper_model_kwargs(faster) == {
        "device": "cuda",
        "device_index": 0,
        "compute_type": "float16",
        "cpu_threads": 4,
        "num_workers": 1,
    }


def test_faster_whisper_runs_int8_on_the_cpu_and_on_the_named_gpu(tmp_path):
    cpu = _config("hf", device="cpu")
    (target,) = [t for t in plan_targets(cpu, tmp_path, _conversions(tmp_path, ("ct2", "int8")), ["faster-whisper"]) if t.system == "faster-whisper"]  # fmt: skip
    kwargs = faster_whisper_model_kwargs(_run_job(target, cpu, [], 2))
    assert (kwargs["device"], kwargs["device_index"], kwargs["compute_type"]) == ("cpu", 0, "int8")
    job = {"device": "cuda:1", "precision": "float16", "threads": 2}
    assert faster_whisper_model_kwargs(job)["device_index"] == 1


def test_a_backend_missing_on_the_gpu_machine_is_a_skipped_row_without_conversions(tmp_path):
    config = _config("onnx:fp16,trt:fp16,ct2:float16", modes=("sequential",))
    unavailable = {"trt": TRT_MISSING, "ct2": "ctranslate2 sees no CUDA device"}
    assert wanted_conversions(config, ["faster-whisper"], unavailable) == [("onnx", "fp16")]
    targets = plan_targets(config, tmp_path, _conversions(tmp_path, ("onnx", "fp16")), ["faster-whisper"], None, unavailable)  # fmt: skip
    skipped = {t.label: t.error for t in targets if t.skipped}
    assert skipped == {
        "trt fp16": f"skipped: trt cannot run here: {TRT_MISSING}",
        "ct2 float16": "skipped: ct2 cannot run here: ctranslate2 sees no CUDA device",
        "faster-whisper float16": "skipped: ct2 cannot run here: ctranslate2 sees no CUDA device",
    }
    assert [t.label for t in targets if not t.skipped] == ["hf fp32", "onnx fp16"]


def test_a_timer_waits_for_the_device_before_its_clock_stops():
    from dwkit.bench.measure import CallTimer

    events: list[str] = []
    timer = CallTimer(lambda x: events.append(f"call {x}"), sync=lambda: events.append("sync"))
    timer(1)
    timer(2)
    assert events == ["call 1", "sync", "call 2", "sync"] and timer.calls == 2


def test_the_probe_job_asks_each_backends_own_probe():
    from dwkit.bench.worker import run_job

    found = run_job({"kind": "probe", "backends": ["hf", "trt"], "device": "cpu"})["unavailable"]
    assert list(found) == ["trt"] and "NVIDIA GPU only" in found["trt"]  # hf runs on this CPU


def test_the_cpu_floor_measures_fp32_and_bf16_on_the_cores():
    from dwkit.bench.worker import run_job

    floor = run_job({"kind": "floor", "size": 64, "threads": 1})
    assert floor["device"] == "cpu" and floor["fp32_gflops"] > 0 and floor["bf16_gflops"] > 0
    assert "fp16_gflops" not in floor and "device_name" not in floor


def test_a_conversion_whose_library_is_missing_makes_its_rows_skipped(monkeypatch):
    from dwkit import devices
    from dwkit.bench.plan import unconvertible

    monkeypatch.setattr(devices, "module_installed", lambda name: name != "onnxscript")
    specs = parse_backends("hf:fp16,onnx:fp16,trt:fp16,ct2:float16,hf:bf16+ct2:int8_float16")
    why = "converting to onnx needs onnxscript: pip install 'dwkit[onnx]'"
    assert unconvertible(specs) == {"onnx": why, "trt": why}  # trt builds from the onnx export
    monkeypatch.setattr(devices, "module_installed", lambda name: name != "ctranslate2")
    assert list(unconvertible(specs)) == ["ct2"]  # the pair's side too


# -- a run on a fake worker pool --------------------------------------------------------------


def _gpu_launcher(calls: list[dict[str, Any]]):
    """Stands in for the workers of a GPU machine without TensorRT."""

    def launch(job: dict[str, Any], timeout: float) -> dict[str, Any]:
        calls.append(job)
        if job["kind"] == "probe":
            return {"unavailable": {"trt": TRT_MISSING}} if "trt" in job["backends"] else {"unavailable": {}}
        if job["kind"] == "floor":
            return {"size": 8192, "threads": 2, "device": job["device"], "device_name": "NVIDIA H200",
                    "fp32_gflops": 50000.0, "bf16_gflops": 700000.0, "fp16_gflops": 710000.0}  # fmt: skip
        if job["kind"] == "convert":
            return {"out_dir": job["out_dir"], "seconds": 1.0, "size_mb": 40.0}
        return {
            **summarise_latencies([8.0], [[0.5]] * job["repeat"]),
            "encoder_ms_per_window": 10.0,
            "decoder_ms_per_token": 2.0,
            "peak_rss_mb": 900.0,
            "gpu_held_mb": 2345.0,
            "gpu_torch_peak_mb": None,
            "size_mb": 150.0,
            "texts": ["words"],
            "settings": {},
        }

    return launch


@pytest.fixture()
def nvidia_smi(monkeypatch):
    """nvidia-smi's answer on an H200 machine (the parent reads the GPU through it)."""

    def answer(*query: str) -> list[list[str]] | None:
        return [["NVIDIA H200", "143771", "570.124.06"]] if query[0].startswith("--query-gpu") else []

    monkeypatch.setattr(measure, "_nvidia_smi", answer)


def test_a_cuda_run_probes_skips_and_names_the_gpu(nvidia_smi, random_tiny80_dir, speech_short, tmp_path):
    calls: list[dict[str, Any]] = []
    config = _config(
        "hf:fp16,onnx:fp16,trt:fp16",
        model=str(random_tiny80_dir),
        audio=[speech_short[0]],
        output=tmp_path / "out",
        peers=False,
        cache_dir=tmp_path / "cache",
        repeat=1,
        name="gpu",
    )
    result = run_bench(config, progress=False, launch=_gpu_launcher(calls))
    (probe,) = [c for c in calls if c["kind"] == "probe"]
    assert probe == {"kind": "probe", "backends": ["hf", "onnx", "trt"], "device": "cuda"}
    assert {c["device"] for c in calls if c["kind"] in ("run", "floor")} == {"cuda"}
    assert [(c["format"], c["precision"]) for c in calls if c["kind"] == "convert"] == [("onnx", "fp16")]
    trt = next(r for r in result["results"] if r["backend"] == "trt")
    assert trt["skipped"] and trt["error"] == f"skipped: trt cannot run here: {TRT_MISSING}"
    report = markdown(result)
    assert "Machine: device cuda = NVIDIA H200, 140.4 GB, driver 570.124.06; CPU " in report
    assert f"| dwkit trt fp16 | sequential | skipped: trt cannot run here: {TRT_MISSING[:40]}" in report
    assert "GPU MB held" in report and "| 2,345 |" in report
    assert "Matmul floor (8192^3, on NVIDIA H200" in report and "fp16 710,000 GFLOP/s" in report


def test_a_cpu_report_names_the_cpu_device(random_tiny80_dir, speech_short, tmp_path):
    config = BenchConfig(model=str(random_tiny80_dir), audio=[speech_short[0]], output=tmp_path, peers=False,
                         cache_dir=tmp_path / "cache", repeat=1, floor=False, name="cpu")  # fmt: skip
    calls: list[dict[str, Any]] = []
    report = markdown(run_bench(config, progress=False, launch=_gpu_launcher(calls)))
    assert "Machine: device cpu; CPU " in report and "GPU MB" not in report
    assert not [c for c in calls if c["kind"] == "probe"]  # on the CPU nothing is probed


def test_a_spent_budget_skips_every_job_and_still_writes_the_report(
    random_tiny80_dir, speech_short, tmp_path
):
    config = BenchConfig(model=str(random_tiny80_dir), audio=[speech_short[0]], output=tmp_path, peers=False,
                         cache_dir=tmp_path / "cache", repeat=1, name="budget", budget_s=1e-9,
                         backends=parse_backends("ct2:int8"))  # fmt: skip
    calls: list[dict[str, Any]] = []
    result = run_bench(config, progress=False, launch=_gpu_launcher(calls))
    assert calls == []  # nothing started after the budget
    assert all(r["error"].startswith("conversion to ct2 int8 failed: skipped") or r.get("skipped")
               for r in result["results"])  # fmt: skip
    assert (tmp_path / "budget.md").is_file()


def test_a_cuda_run_without_a_gpu_is_one_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(ConfigError, match="--device cuda: no NVIDIA GPU visible here"):
        run_bench(_config("hf:fp16", output=tmp_path, cache_dir=tmp_path), progress=False)


# -- the prepared GPU script ------------------------------------------------------------------


def test_the_gpu_script_refuses_a_machine_without_a_gpu_in_one_line():
    import sys

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_bench.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "gpu_bench: no NVIDIA GPU visible here (no /dev/nvidia* device, or CUDA_VISIBLE_DEVICES hides it); "
        "run benchmarks/gpu_bench.sh on a GPU machine"
    ]


def test_gpu_names_become_file_name_parts():
    from dwkit.bench.gpu_check import file_name_part

    assert file_name_part("NVIDIA H200") == "nvidia_h200"
    assert file_name_part("NVIDIA GeForce RTX 4090 (24 GB)") == "nvidia_geforce_rtx_4090_24_gb"


# -- on a GPU ---------------------------------------------------------------------------------


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs torch with a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_the_floor_is_measured_on_the_gpu():
    from dwkit.bench.worker import run_job

    floor = run_job({"kind": "floor", "device": "cuda", "size": 2048})
    assert floor["device_name"] and floor["fp16_gflops"] > floor["fp32_gflops"] > 0


@pytest.mark.gpu
@needs_cuda
def test_a_cuda_run_on_real_workers_runs_or_skips_every_row(random_tiny80_dir, speech_short, tmp_path):
    config = _config(
        "hf:fp16,hf:bf16,ct2:float16,ct2:int8_float16,onnx:fp16,trt:fp16",
        model=str(random_tiny80_dir),
        audio=[speech_short[0]],
        modes=("sequential",),
        peers=["faster-whisper"],
        repeat=1,
        tokens_per_window=8,
        output=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        name="gpu",
    )
    result = run_bench(config, progress=False)
    rows = {r["label"]: r for r in result["results"]}
    for label in ("hf fp32", "hf fp16", "hf bf16"):  # torch sees the GPU (needs_cuda)
        assert "error" not in rows[label], rows[label]
        assert rows[label]["tokens_per_window"] == 8 and rows[label]["gpu_torch_peak_mb"] > 0
    failed = {label: r["error"] for label, r in rows.items() if "error" in r and not r.get("skipped")}
    assert failed == {}  # every other row ran, or says why this machine cannot run it
    assert result["machine"]["gpu"]["name"] in markdown(result)
    assert result["floor"]["device_name"] and result["floor"]["fp16_gflops"] > 0
