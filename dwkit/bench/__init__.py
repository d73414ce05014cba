"""`dwkit bench`: RTFx, latency, encoder/decoder cost, load time, memory and size, per backend
and long-form mode, always next to the transformers fp32 baseline measured in the same run.

- `config`: what a run measures (flags or a TOML file) and backend spec parsing;
- `runner`: prepares the model, conversions and audio, runs each system in a worker process;
- `worker`: one job in a fresh process (`python -m dwkit.bench.worker`), JSON in and out;
- `measure`: timers, RTFx/latency math, peak RSS, machine info, the matmul floor;
- `report`: the JSON, markdown table and PNG chart.
"""

from dwkit.bench.config import BenchConfig, SystemSpec, parse_backends
from dwkit.bench.runner import run_bench

__all__ = ["BenchConfig", "SystemSpec", "parse_backends", "run_bench"]
