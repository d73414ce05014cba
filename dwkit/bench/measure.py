"""Measurement primitives shared by every benchmark: timers, RTFx and latency, memory, machine.

Nothing here imports a backend library at module level, so the benchmark parent process and
the per-backend scripts in `benchmarks/` can use it without paying for torch. Definitions:

- RTFx (the Open ASR leaderboard's): total audio seconds / total transcription seconds.
- latency: seconds to transcribe one file (one request), audio already decoded in memory;
  p50/p95 over every file of every repeat.
- encoder ms per window: seconds inside `backend.encode` / batch rows encoded (30 s windows).
- decoder ms per token: seconds inside `backend.generate` / tokens generated (end-of-text
  included; the prompt pass and the shared logit rules are part of that time).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Library versions recorded with every result.
LIBRARIES = (
    "dwkit",
    "numpy",
    "torch",
    "transformers",
    "ctranslate2",
    "faster-whisper",
    "onnxruntime",
    "openvino",
    "nncf",
    "openvino-genai",
    "pywhispercpp",
    "tensorrt",
)
# Before any OpenMP runtime starts: on a shared 2-core machine the default spin-waiting made
# torch 15x slower whenever another process was busy (tests/conftest.py sets it too).
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GGML_NO_BACKTRACE": "1", "TOKENIZERS_PARALLELISM": "false"}
FLOOR_MATMUL_SIZE = 4096
# A GPU finishes a 4096^3 matmul in well under a millisecond: a bigger one keeps launch
# overhead out of the rate.
GPU_FLOOR_MATMUL_SIZE = 8192


class CallTimer:
    """Wraps a callable: adds up the wall seconds of its calls and the units `count` reports.

    `count(args, result)` says how much work one call did (batch rows encoded, tokens
    generated); without it every call counts 1. `sync` runs before the clock stops: on a GPU
    a call can return before its kernels finish (cuda_sync).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        count: Callable[[tuple, Any], int] | None = None,
        sync: Callable[[], None] | None = None,
    ):
        self.fn = fn
        self.count = count
        self.sync = sync
        self.reset()

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.units = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self.fn(*args, **kwargs)
        if self.sync is not None:
            self.sync()
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.units += self.count(args, result) if self.count else 1
        return result

    def summary(self) -> dict[str, float | int]:
        return {"seconds": round(self.seconds, 6), "calls": self.calls, "units": self.units}


def generated_tokens(hypotheses: Iterable[Any]) -> int:
    """Tokens a `generate` call produced: each hypothesis' tokens plus its end-of-text, if any."""
    return sum(len(h.tokens) + int(bool(h.finished)) for h in hypotheses)


def cuda_sync() -> None:
    """Wait for the GPU work torch queued, where this process uses torch on a GPU (hf, trt,
    the pipeline: their calls return before the kernels finish). ctranslate2 and onnxruntime
    return finished results; a process that never used torch's CUDA is not made to."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def instrument_backend(backend: Any, sync: Callable[[], None] | None = None) -> tuple[CallTimer, CallTimer]:
    """Time `backend.encode` (units: windows) and `backend.generate` (units: tokens).

    Instance attributes shadow the methods, so the shared long-form engine, which calls
    `backend.encode` / `backend.generate`, is timed without changing it; step backends'
    own `generate` still calls their `step` directly. Undo with `del backend.encode` etc.
    On a GPU pass `sync=cuda_sync`, so each figure is the work's, not its queueing.
    """
    encode = CallTimer(backend.encode, lambda args, _: int(args[0].shape[0]), sync)
    generate = CallTimer(backend.generate, lambda _, hyps: generated_tokens(hyps), sync)
    backend.encode = encode
    backend.generate = generate
    return encode, generate


class TimedModel:
    """Proxy for a `ctranslate2.models.Whisper` (e.g. faster-whisper's `model.model`): times
    `encode` (units: windows) and `generate` (units: tokens, + end-of-text for results that
    stopped before `budget` new tokens; with budget None every result is taken as stopped)."""

    def __init__(self, model: Any, budget: int | None = None):
        self._model = model
        self._budget = budget
        self.encoder = CallTimer(model.encode, lambda args, _: int(args[0].shape[0]))
        self.decoder = CallTimer(model.generate, lambda _, results: self._tokens(results))

    def _tokens(self, results: Any) -> int:
        count = 0
        for result in results:
            n = len(result.sequences_ids[0])
            count += n + int(self._budget is None or n < self._budget)
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        return self.encoder(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


def per_unit_ms(seconds: float, units: int) -> float | None:
    return round(seconds / units * 1000, 3) if units else None


def rtfx(audio_seconds: float, transcription_seconds: float) -> float | None:
    """Total audio seconds over total transcription seconds (None when nothing was timed)."""
    if transcription_seconds <= 0:
        return None
    return audio_seconds / transcription_seconds


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise_latencies(
    audio_seconds: Sequence[float], latencies: Sequence[Sequence[float]]
) -> dict[str, Any]:
    """RTFx and latency figures from per-file audio lengths and [repeat][file] latencies."""
    flat = [t for repeat in latencies for t in repeat]
    total_audio = sum(audio_seconds) * len(latencies)
    per_repeat = [rtfx(sum(audio_seconds), sum(repeat)) for repeat in latencies]
    value = rtfx(total_audio, sum(flat))
    return {
        "audio_seconds": round(total_audio, 3),
        "transcription_seconds": round(sum(flat), 4),
        "rtfx": round(value, 3) if value is not None else None,
        "rtfx_per_repeat": [round(r, 3) if r is not None else None for r in per_repeat],
        "latency_p50_s": round(percentile(flat, 50), 4) if flat else None,
        "latency_p95_s": round(percentile(flat, 95), 4) if flat else None,
    }


def peak_rss_mb() -> float:
    """This process' peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if platform.system() == "Darwin" else 1 / 1024
    return round(peak * scale, 1)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_utilisation(cpu_s: float, wall_s: float, threads: int) -> float | None:
    """CPU seconds over (wall seconds x threads): near 1 when the system had its cores to itself;
    well below 1 on a busy shared machine (or for a system that leaves threads idle)."""
    if wall_s <= 0 or threads <= 0:
        return None
    return round(cpu_s / (wall_s * threads), 3)


def dir_size_mb(path: str | os.PathLike[str]) -> float:
    """Bytes of every file under `path` (a model directory), in MiB."""
    root = Path(path)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model and features, cores, RAM, load, libraries,
    the device the systems ran on and, for cuda, the GPU (nvidia-smi)."""
    cpu: dict[str, Any] = {"model": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and "name" not in cpu:
            cpu["name"] = value
        elif key == "flags" and "features" not in cpu:
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")
            flags = set(value.split())
            cpu["features"] = [f for f in wanted if f in flags]
    if "name" in cpu:
        cpu["model"] = cpu.pop("name")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "cpu": cpu["model"],
        "cpu_features": cpu.get("features", []),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gb": _ram_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": library_versions(),
        "device": device,
        **({"gpu": gpu_info(device)} if device.startswith("cuda") else {}),
    }


def _nvidia_smi(*query: str) -> list[list[str]] | None:
    """nvidia-smi's CSV answer to `query` (rows of fields), or None where it is missing or fails.
    The driver's own tool: the parent process reads the GPU without importing torch."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [[field.strip() for field in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def gpu_info(device: str = "cuda") -> dict[str, Any]:
    """The GPU `device` names (cuda:N is the N-th nvidia-smi lists): name, memory, driver."""
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    rows = _nvidia_smi("--query-gpu=name,memory.total,driver_version")
    if not rows or index >= len(rows) or len(rows[index]) < 3:
        return {"name": "unknown (nvidia-smi missing or failed)", "index": index}
    name, memory, driver = rows[index][:3]
    return {"name": name, "index": index, "memory_gb": round(float(memory) / 1024, 1), "driver": driver}


def gpu_memory_mb(device: str) -> dict[str, float | None]:
    """GPU memory of this process: torch's peak allocation (where torch used the GPU here) and
    what nvidia-smi says the process holds now (every library's allocations and the CUDA
    context; caching allocators keep their peak reserved, so this is near the peak). Either is
    None where it cannot be known."""
    import sys

    torch_peak = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch_peak = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    held = None
    for row in _nvidia_smi("--query-compute-apps=pid,used_memory") or []:
        if len(row) >= 2 and row[0] == str(os.getpid()) and row[1].isdigit():
            held = float(row[1])
    return {"gpu_torch_peak_mb": torch_peak, "gpu_held_mb": held}


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class EncoderShape:
    """What the encoder's cost depends on (transformers' WhisperConfig names)."""

    n_mels: int
    d_model: int
    layers: int
    ffn_dim: int
    positions: int = 1500  # encoder positions per 30 s window (3000 mel frames / conv stride 2)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EncoderShape:
        return cls(
            n_mels=int(config["num_mel_bins"]),
            d_model=int(config["d_model"]),
            layers=int(config["encoder_layers"]),
            ffn_dim=int(config["encoder_ffn_dim"]),
            positions=int(config.get("max_source_positions", 1500)),
        )


def encoder_flops(shape: EncoderShape) -> float:
    """Floating-point operations (2 per multiply-add) of one 30 s window through the encoder.

    Two convolutions (kernel 3; the second with stride 2), then per layer the q/k/v/out
    projections, the attention scores and their weighted sum, and the two MLP matrices.
    Norms, softmax and GELU are left out (under 1%). distil-large-v3.5: ~2.27e12.
    """
    t, d = shape.positions, shape.d_model
    convs = 2 * (2 * t) * d * shape.n_mels * 3 + 2 * t * d * d * 3
    projections = 4 * 2 * t * d * d
    attention = 2 * 2 * t * t * d
    mlp = 2 * 2 * t * d * shape.ffn_dim
    return float(convs + shape.layers * (projections + attention + mlp))


def matmul_gflops(
    dtype_name: str, size: int = FLOOR_MATMUL_SIZE, threads: int = 0, reps: int = 3, device: str = "cpu"
) -> float:
    """Best-of-`reps` torch matmul throughput (GFLOP/s) at `size`^3 in fp32, bf16 or fp16 on
    `device` (on a GPU each timing waits for the kernel: torch.cuda.synchronize).

    The encoder is almost all matmuls of similar shapes, so this is the floor its time per
    window can approach on this machine: encoder_flops / this.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    wait = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: thread pool, kernel selection
        wait()
        best = math.inf
        for _ in range(reps):
            started = time.perf_counter()
            torch.matmul(a, b)
            wait()
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9
