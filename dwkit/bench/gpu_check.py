"""Whether this machine can run the prepared GPU benchmark: `python -m dwkit.bench.gpu_check`.

benchmarks/gpu_bench.sh asks this before it spends minutes building a full-size model: an
NVIDIA GPU must be visible, torch must be a CUDA build that sees it, and dwkit's core
libraries must be importable (the script installs nothing). On success it prints the GPU's
name as a file-name part (`nvidia_h200`) on stdout and, on stderr, which GPU backends can run
here (the rest are skipped rows in the run, each with its reason); otherwise one line on
stderr and exit status 1.
"""

from __future__ import annotations

import re
import sys

from dwkit.devices import module_installed, nvidia_gpu_present

# What every row needs besides torch (pyproject's core dependencies and the hf extra).
CORE_MODULES = (
    "numpy",
    "av",
    "tokenizers",
    "jiwer",
    "tqdm",
    "huggingface_hub",
    "transformers",
    "safetensors",
)
GPU_BACKENDS = ("hf", "ct2", "onnx", "trt")


def gpu_problem() -> str | None:
    """Why the GPU benchmark cannot run here, or None."""
    if not nvidia_gpu_present():
        return (
            "no NVIDIA GPU visible here (no /dev/nvidia* device, or CUDA_VISIBLE_DEVICES hides it); "
            "run benchmarks/gpu_bench.sh on a GPU machine"
        )
    missing = [m for m in ("torch", *CORE_MODULES) if not module_installed(m)]
    if missing:
        return f"missing Python modules {', '.join(missing)} (this script installs nothing): pip install 'dwkit[hf]'"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (torch.version.cuda = {torch.version.cuda}); install a CUDA build of torch"
    return None


def file_name_part(name: str) -> str:
    """A GPU name as part of a file name: "NVIDIA H200" -> "nvidia_h200"."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "gpu"


def main() -> int:
    problem = gpu_problem()
    if problem:
        print(f"gpu_bench: {problem}", file=sys.stderr)
        return 1
    import torch

    from dwkit.runtimes import unavailable_reason

    for backend in GPU_BACKENDS:
        reason = unavailable_reason(backend, "cuda")
        print(
            f"gpu_bench: {backend} on cuda: {'ready' if reason is None else 'skipped, ' + reason}",
            file=sys.stderr,
        )
    print(file_name_part(torch.cuda.get_device_name(0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
