"""transformers/PyTorch backend: the reference every other backend is measured against.

It decodes step by step through the shared decoders (not `generate`), so its choices are
made by exactly the code every other step backend uses; the long-form tests then prove that
this reproduces transformers' own `generate` and pipeline outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, StepBackend, check_mel, check_part
from dwkit.runtimes.declaration import BackendSpec

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class _Cache:
    encoder_states: Any  # torch.Tensor [batch, 1500, d_model]
    past: Any  # transformers EncoderDecoderCache


class HFBackend(StepBackend):
    name = "hf"

    def __init__(self, model: Any, info: ModelInfo, device: str, dtype: Any):
        self.model = model
        self.info = info
        self.device = device
        self.dtype = dtype
        self._encoder_digest: str | None = None
        self._eager: Any = None  # the decoder that reports attention weights (word timestamps)
        self._eager_lock = threading.Lock()

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> HFBackend:
        import torch
        from transformers import WhisperForConditionalGeneration
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its generation-config notices are not the user's problem
        precision = config.precision or "fp32"
        problem = BACKEND.precision_problem(precision, config.device)
        if problem:
            raise ConfigError(f"hf precision {precision!r} {problem}")
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("hf on cuda: no CUDA device visible to torch")
        if config.threads:
            torch.set_num_threads(config.threads)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        info = ModelInfo.from_hf_dir(model_dir)
        if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
            raise ModelError(f"{model_dir}: no weights (model.safetensors or pytorch_model.bin)")
        from safetensors import SafetensorError

        try:
            with quiet_loading():
                model = WhisperForConditionalGeneration.from_pretrained(
                    model_dir, dtype=dtype, attn_implementation="sdpa"
                )
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # truncated/corrupt weights
            hint = (
                " (config.json does not match the weights, e.g. num_mel_bins)"
                if "size mismatch" in str(exc)
                else ""
            )
            raise ModelError(f"{model_dir}: transformers could not load it{hint}: {exc}") from exc
        _drop_unused_half(model, config.part)
        model.to(config.device).eval()
        return cls(model, info, config.device, dtype)

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        import torch

        check_mel(mel, self.info)
        if self.model.model.encoder is None:
            raise ModelError("hf: loaded as an encoder/decoder pair's decoder side, without its encoder")
        with torch.inference_mode():
            features = torch.from_numpy(np.ascontiguousarray(mel)).to(self.device, self.dtype)
            states = self.model.model.encoder(input_features=features).last_hidden_state
        return EncoderOutput(data=states, batch_size=mel.shape[0])

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        import torch

        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        return EncoderOutput(data=enc.data.index_select(0, index), batch_size=len(rows))

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return enc.data.float().cpu().numpy()  # fp32 on the CPU: the tensor's own buffer

    def encoder_states_from_array(self, array: np.ndarray) -> EncoderOutput:
        """Another backend's encoder states (an encoder/decoder pair): shares the buffer at fp32 on the CPU."""
        import torch

        states = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device, self.dtype)
        return EncoderOutput(data=states, batch_size=int(states.shape[0]))

    def start(self, enc: EncoderOutput, batch_index: np.ndarray) -> _Cache:
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        rows = torch.from_numpy(np.asarray(batch_index, dtype=np.int64)).to(self.device)
        past = EncoderDecoderCache(DynamicCache(), DynamicCache())
        return _Cache(enc.data.index_select(0, rows), past)

    def step(self, tokens: np.ndarray, cache: _Cache) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(self.device)
            out = self.model.model.decoder(
                input_ids=ids,
                encoder_hidden_states=cache.encoder_states,
                past_key_values=cache.past,
                use_cache=True,
            )
            cache.past = out.past_key_values
            logits = self.model.proj_out(out.last_hidden_state)
        return logits.float().cpu().numpy()

    def reorder(self, cache: _Cache, index: np.ndarray) -> _Cache:
        import torch

        rows = torch.from_numpy(np.asarray(index, dtype=np.int64)).to(self.device)
        cache.past.reorder_cache(rows)
        cache.encoder_states = cache.encoder_states.index_select(0, rows)
        return cache

    def truncate(self, cache: _Cache, length: int) -> _Cache:
        """transformers' own rollback (its assisted generation uses it). A negative count
        ("remove this many") means the same in 4.57 and 5.x; 5.x refuses 4.57's absolute
        length, and 4.57 empties the cache on crop(0), hence only a positive surplus."""
        surplus = cache.past.get_seq_length() - length
        if surplus > 0:
            cache.past.crop(-surplus)
        return cache

    def cross_attentions(
        self, enc: EncoderOutput, row: int, tokens: list[int], heads: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        decoder = self._eager_decoder()
        with torch.inference_mode():
            ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
            out = decoder(
                input_ids=ids,
                encoder_hidden_states=enc.data[row : row + 1],
                output_attentions=True,
                use_cache=False,
            )
            weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
            logits = self.model.proj_out(out.last_hidden_state[0])
        return weights.float().cpu().numpy(), logits.float().cpu().numpy()

    def _eager_decoder(self) -> Any:
        """A second decoder module over the same weight tensors, with eager attention.

        sdpa (what decoding runs on) returns no attention weights; switching the shared
        config to eager per call would race with other threads and slow every decode step,
        so words get their own module, built on the meta device and given the loaded
        tensors (`assign=True`: no copy), only when word timestamps are first asked for.
        """
        with self._eager_lock:
            if self._eager is None:
                import copy

                import torch
                from transformers.models.whisper.modeling_whisper import WhisperDecoder

                config = copy.deepcopy(self.model.config)
                config._attn_implementation = "eager"
                with torch.device("meta"):
                    decoder = WhisperDecoder(config)
                decoder.load_state_dict(self.model.model.decoder.state_dict(), assign=True)
                self._eager = decoder.eval()
        return self._eager

    def encoder_digest(self) -> str:
        import torch

        if self._encoder_digest is None:
            digest = hashlib.sha256(f"{self.device}:{self.dtype}".encode())
            for name, tensor in sorted(self.model.model.encoder.state_dict().items()):
                digest.update(f"{name}{tuple(tensor.shape)}".encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
            self._encoder_digest = digest.hexdigest()
        return self._encoder_digest


def _drop_unused_half(model: Any, part: str | None) -> None:
    """A pair's side keeps only the half it runs: the encoder side drops the decoder and the
    output projection (tied to the token embedding), the decoder side the encoder (at
    distil-large-v3.5's size 1.27 GB in bf16). transformers loads the model whole, so the load
    itself still peaks at the full model."""
    check_part(part)
    if part == "encoder":
        model.model.decoder = None
        model.proj_out = None
    elif part == "decoder":
        model.model.encoder = None


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers 5.x draws a "Loading weights" bar for every local load (4.57 drew none):
    noise on a CLI whose errors are one line, and not long work. Off while loading only, so
    downloads keep their bars."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


# --- declaration ---------------------------------------------------------------------------


def _probe(device: str) -> str | None:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        return f"needs {exc.name}: pip install 'dwkit[hf]' (install torch==2.13.0 first on CPU)"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "torch is a CPU build (or sees no CUDA device)"
    return None


def _is_checkpoint(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file()


def _weight_problems(model_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    weights = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("pytorch_model*.bin"))
    if not weights:
        return ["no weights (model.safetensors or pytorch_model.bin)"]
    return [p for p in (safetensors_problem(w) for w in weights if w.suffix == ".safetensors") if p]


def safetensors_problem(path: Path) -> str | None:
    """A truncated or corrupt safetensors file, from its header alone (no tensor is read)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size - 8:
                return f"{path.name}: truncated (header larger than the file)"
            header = json.loads(handle.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
        return f"{path.name}: not a readable safetensors file ({exc})"
    if 8 + header_len + end > size:
        return f"{path.name}: truncated ({size} bytes; its header describes {8 + header_len + end})"
    return None


BACKEND = BackendSpec(
    name="hf",
    summary="transformers / PyTorch: the reference every other backend is measured against",
    backend_class=HFBackend,
    formats=("hf",),
    extra="hf",
    precisions=PRECISIONS,
    default_precision="fp32",
    gpu_only_precisions=("fp16",),
    devices=("cpu", "cuda"),
    probe=_probe,
    requires=("torch", "transformers"),
    install_hint="needs torch and transformers: pip install 'dwkit[hf]' (install torch==2.13.0 first on CPU)",
    weight_files=("*.safetensors", "pytorch_model*.bin"),
    file_problems=_weight_problems,
    recognise=_is_checkpoint,
    bench_precision="fp32",
)
