#!/usr/bin/env bash
# Issue 21's GPU benchmark in one prepared run, under 8 minutes on an H200-class machine:
# benchmarks/configs/gpu_distil_large_v3_5.toml (full-size distil-large-v3.5, seeded random
# weights) on cuda: hf fp32/fp16/bf16, ct2 float16/int8_float16, onnxruntime CUDA fp16,
# TensorRT fp16 where tensorrt imports, against faster-whisper float16 in the same run.
# Writes benchmarks/results/gpu_distil_large_v3_5-<gpu>.{json,md,png}, the GPU named in the
# file name and in the report's machine line.
#
#   benchmarks/gpu_bench.sh [extra dwkit bench flags]      # PYTHON=... to pick the interpreter
#
# Installs nothing: where PYTHON does not import this checkout's dwkit (not installed, or
# another copy), the checkout goes first on PYTHONPATH through a directory of links (pyproject
# maps dwkit.runtimes / dwkit.converters to top-level folders).
# Time budget (BUDGET, default 400 s of jobs; the run stops starting jobs when it is spent):
# model build ~40 s, conversions ~150 s (ct2 float16 + int8_float16 ~50 s, the onnx export and
# its fp16 copy ~100 s), matmul floor ~10 s, eight rows at ~15 s each (load, warm-up, 2 repeats
# of 61.8 s), then TensorRT's engine build with what is left (rows it cannot finish are
# skipped with the reason). The hard stop below (BUDGET + 50 s) keeps the whole script under
# 8 minutes even if a job overruns.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd -P)
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-400}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # a neutral directory: the checkout's top level would shadow dwkit.runtimes

found=$("$PYTHON" -c "import dwkit, os; print(os.path.dirname(os.path.dirname(os.path.realpath(dwkit.__file__))))" 2>/dev/null || true)
if [ "$found" != "$here" ]; then  # not installed, or another copy's dwkit: run this checkout's
    mkdir dwkit
    for entry in "$here"/dwkit/*; do ln -s "$entry" dwkit/; done
    ln -s "$here/runtimes" dwkit/runtimes
    ln -s "$here/converters" dwkit/converters
    export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
fi

gpu=$("$PYTHON" -m dwkit.bench.gpu_check) || exit 1

audio=()
if ! command -v espeak-ng >/dev/null; then  # the config's espeak-ng speech: 4 x the 15 s demo instead
    echo "gpu_bench: espeak-ng not found: transcribing dwkit/data/demo.flac 4 times (60.5 s)" >&2
    audio=(--audio "$here"/dwkit/data/demo.flac "$here"/dwkit/data/demo.flac "$here"/dwkit/data/demo.flac "$here"/dwkit/data/demo.flac)
fi

export OMP_WAIT_POLICY=PASSIVE
timeout --kill-after=10 $((BUDGET + 50)) "$PYTHON" -m dwkit.cli.main bench \
    --config "$here/benchmarks/configs/gpu_distil_large_v3_5.toml" --budget "$BUDGET" \
    --output "$here/benchmarks/results" --name "gpu_distil_large_v3_5-$gpu" --no-progress "${audio[@]}" "$@"
