"""`dwkit bench`: RTFx, latency, encoder/decoder cost, load time, memory and size, per backend
and long-form mode, always next to the transformers fp32 baseline measured in the same run.

Read `runner` first (the run, top to bottom), then:

- `config`: what a run measures (flags or a TOML file) and backend spec parsing;
- `goal`: a benchmark's goal (from its config) and where a run stands against it;
- `prepare`: the source model (given, bundled, hub or synthetic) and the audio;
- `plan`: the peers installed here, the conversions needed, every (system, mode) row;
- `convert`: each conversion once, in a worker, into the shared dwkit.conversion_cache;
- `pool`: worker processes, single-shot or serving interleaved repeats;
- `retry`: a row starved by a busy machine is run again, the better run kept;
- `compare`: ratios and WER against the baseline of the same mode;
- `records`: definitions, model, audio and floor records of the result;
- `worker`: one job in a fresh process (`python -m dwkit.bench.worker`), JSON in and out;
- `measure`: timers, RTFx/latency math, peak RSS, machine info, the matmul floor;
- `report`: the JSON, markdown table and PNG chart.
"""

from dwkit.bench.config import BenchConfig, SystemSpec, parse_backends
from dwkit.bench.goal import Goal
from dwkit.bench.runner import run_bench

__all__ = ["BenchConfig", "Goal", "SystemSpec", "parse_backends", "run_bench"]
