"""The descriptive parts of a result: what each figure means, the model, the audio and the
matmul floor (with the encoder's floor time per window derived from it)."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

from dwkit.bench.config import BenchConfig
from dwkit.bench.measure import WORKER_ENV, EncoderShape, encoder_flops
from dwkit.bench.prepare import wav_seconds

DEFINITIONS = {
    "rtfx": "total audio seconds / total transcription seconds (audio decoded beforehand; model load "
    "and one warm-up transcription of the first 10 s excluded); with repeat > 1 the systems of one mode "
    "are loaded side by side in their own workers and their repeats run round-robin (interleaved)",
    "latency": "seconds per file (one request), p50/p95 over every file of every repeat",
    "encoder_ms_per_window": "time inside backend.encode / 30 s windows encoded (batch rows)",
    "decoder_ms_per_token": "time inside backend.generate / tokens generated (end-of-text included; "
    "the prompt pass and the logit rules are in that time); for the pipeline, generate minus its encoder",
    "peak_rss_mb": "ru_maxrss of the worker process (one process per system and mode)",
    "gpu_held_mb": "device cuda: GPU memory nvidia-smi says the worker process holds after its last repeat "
    "(every library's allocations and the CUDA context; caching allocators keep their peak reserved); "
    "None where nvidia-smi is missing",
    "gpu_torch_peak_mb": "device cuda: torch.cuda.max_memory_allocated of the worker (only what torch "
    "allocated: hf, trt and the pipeline; None for systems that never used torch on the GPU)",
    "cpu_utilisation": "the worker's CPU seconds / (wall seconds x threads) while transcribing; well "
    "under 1 means it waited for cores that other processes held (a busy shared machine)",
    "size_mb": "bytes of every file in the model directory the system loads",
    "vs_baseline": "ratios to transformers fp32 (dwkit hf backend) in the same mode and run: speedup = "
    "rtfx / baseline rtfx, encoder/decoder = baseline ms / ms, rss/size = value / baseline value",
}


def model_record(config: BenchConfig, model_dir: Path, shape: EncoderShape) -> dict[str, Any]:
    from dwkit.manifest import read_manifest

    model_config = json.loads((model_dir / "config.json").read_text())
    keys = (
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "encoder_attention_heads",
        "encoder_ffn_dim",
        "num_mel_bins",
        "vocab_size",
        "max_source_positions",
        "max_target_positions",
    )
    made = (
        ((read_manifest(model_dir) or {}).get("source") or {}) if (model_dir / "dwkit.json").is_file() else {}
    )
    random = bool(config.synthetic_model) or made.get("kind") == "random"
    return {
        "source": config.synthetic_model or config.model,
        "synthetic": random,
        "weights": f"seeded random (dwkit.synthetic {made.get('preset', '')}, seed {made.get('seed', 0)})"
        if random
        else "trained",
        "dir": str(model_dir),
        "architecture": {k: model_config.get(k) for k in keys},
        "encoder_gflop_per_window": round(encoder_flops(shape) / 1e9, 1),
        "tokens_per_window": config.tokens_per_window,
    }


def audio_record(files: list[Path], reference: str | None) -> dict[str, Any]:
    seconds = []
    for path in files:
        try:
            seconds.append(round(wav_seconds(path), 2))
        except (wave.Error, EOFError):
            seconds.append(None)
    return {
        "files": [str(p) for p in files],
        "seconds": seconds,
        "total_seconds": round(sum(s for s in seconds if s), 2) if all(seconds) else None,
        "source": "espeak-ng speech of dwkit.speech.SENTENCES" if reference is not None else "given files",
    }


def floor_record(floor: dict[str, Any] | None, shape: EncoderShape) -> dict[str, Any] | None:
    if floor is None or "error" in floor:
        return floor
    flops = encoder_flops(shape)
    rates = [dtype for dtype in ("bf16", "fp32", "fp16") if floor.get(f"{dtype}_gflops")]
    return {
        **floor,
        "encoder_gflop_per_window": round(flops / 1e9, 1),
        **{
            f"encoder_floor_ms_{dtype}": round(flops / (floor[f"{dtype}_gflops"] * 1e9) * 1000, 1)
            for dtype in rates
        },
    }


def worker_env_record(threads: int) -> dict[str, str]:
    """The environment every worker ran with, and why."""
    return {
        **WORKER_ENV,
        "OMP_NUM_THREADS": str(threads),
        "why": "OMP_WAIT_POLICY=PASSIVE: on a shared 2-core machine OpenMP spin-waiting made torch "
        "15x slower; every worker (one process per system and mode) runs with it",
    }
