"""What speculative decoding can gain on this machine: the step costs it trades, at real size.

Speculative decoding replaces K+1 main-model decoder steps by K draft steps and one main step
over K+1 tokens. Its speedup on the decoder is therefore fixed by three measured costs and the
acceptance rate a:

    tokens per main step  E(a) = (1 - a^(K+1)) / (1 - a)
    speedup               S(a) = E(a) * T_main(1) / (T_main(K+1) + K * T_draft(1))

This script measures T_main(1), T_main(K+1) and T_draft(1) with hf fp32 on the synthetic
large-v3 (32 decoder layers) and its distil-style student (2 layers), decoding after a
prompt of `--context` tokens, and prints S(a) for a range of acceptance rates. Encoder states
are random (a decoder step costs the same whatever their values), so no encoder pass is paid.
The encoder is not part of S(a): on a CPU a 32-layer fp32 encoder pass per window costs far more
than the tokens of a short window, which bounds the end-to-end gain (Amdahl); the bench rows
(benchmarks/configs/speculative_large_v3_synthetic.toml) measure that whole picture.

    python benchmarks/speculative_costs.py --threads 2 --out benchmarks/results/speculative_costs_large_v3.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of `fn()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def step_costs(backend, enc, context: int, k: int, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds of one decoder step over 1 and over k+1 new tokens after `context` cached ones."""
    info = backend.info
    cache = backend.start(enc, np.array([0]))
    backend.step(np.full((1, context), info.sot, dtype=np.int64), cache)

    def one() -> None:
        backend.step(np.array([[info.sot]]), cache)
        backend.truncate(cache, context)

    def many() -> None:
        backend.step(np.full((1, k + 1), info.sot, dtype=np.int64), cache)
        backend.truncate(cache, context)

    one()  # first-call costs excluded
    return {"one": _timed(one, repeats), "k_plus_1": _timed(many, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=5, help="K, draft tokens per main step")
    parser.add_argument("--context", type=int, default=40, help="tokens already in the cache")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from dwkit.runtimes import RuntimeConfig, load
    from dwkit.runtimes.base import EncoderOutput
    from dwkit.synthetic import make_student, random_model

    teacher = random_model("large-v3")
    student = teacher.parent / f"{teacher.name}-student"
    if not (student / "model.safetensors").is_file():
        make_student(teacher, student)
    runtime = RuntimeConfig(threads=args.threads)
    load_average = [round(x, 2) for x in os.getloadavg()]
    main_model = load(teacher, "hf", runtime)
    states = EncoderOutput(torch.randn(1, 1500, main_model.info.d_model), 1)
    main_costs = step_costs(main_model, states, args.context, args.tokens, args.repeats)
    del main_model
    draft = load(student, "hf", runtime)
    draft_costs = step_costs(draft, states, args.context, args.tokens, args.repeats)
    k = args.tokens
    spent = main_costs["k_plus_1"] + k * draft_costs["one"]
    projected = {}
    for a in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0):
        expected = k + 1 if a == 1.0 else (1 - a ** (k + 1)) / (1 - a)
        projected[f"{a:.2f}"] = round(expected * main_costs["one"] / spent, 3)
    result = {
        "benchmark": "speculative decoding step costs (hf fp32, synthetic large-v3 + 2-layer student)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": args.threads,
        "K": k,
        "context_tokens": args.context,
        "load_average_before": load_average,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "main_step_s": {
            "1 token": round(main_costs["one"], 4),
            f"{k + 1} tokens": round(main_costs["k_plus_1"], 4),
        },
        "draft_step_s": {"1 token": round(draft_costs["one"], 4)},
        "verify_cost_vs_one_step": round(main_costs["k_plus_1"] / main_costs["one"], 3),
        "draft_step_vs_main_step": round(draft_costs["one"] / main_costs["one"], 3),
        "projected_decoder_speedup_by_acceptance": projected,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
