"""ONNX exports made by optimum / onnx-community, run unchanged by the onnx backend.

Their layout is optimum's, not dwkit's: `encoder_model.onnx` (input_features ->
last_hidden_state) and either `decoder_model.onnx` (prompt: input_ids, encoder_hidden_states
-> logits, present.N.{decoder,encoder}.{key,value}) plus `decoder_with_past_model.onnx` (one
token with past_key_values.N.* -> logits, present.N.decoder.*), or one
`decoder_model_merged.onnx` that takes both inputs and picks a branch with `use_cache_branch`
(its present.N.encoder.* after the first step are placeholders, so the first step's cross K/V
are kept). Precision variants sit beside them with a suffix (`encoder_model_fp16.onnx`,
`decoder_model_merged_quantized.onnx`, ...), in the directory itself (`optimum-cli export onnx`)
or in an `onnx/` subfolder under config.json and tokenizer.json (onnx-community on the hub).

Only the tensor adapter is new: `OptimumRunner` is a `graph_steps.GraphRunner`, so caching,
prompt de-duplication and beam reordering are the same code as for dwkit's own graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, check_mel
from dwkit.runtimes.graph_steps import GraphStepBackend

ENCODER = "encoder_model"
DECODER = "decoder_model"
WITH_PAST = "decoder_with_past_model"
MERGED = "decoder_model_merged"
SUBFOLDER = "onnx"  # where onnx-community keeps the graphs (config and tokenizer stay on top)

# File-name suffixes of each precision, as optimum's quantizer (`_quantized`) and
# onnx-community's conversion scripts (`_fp16`, `_int8`, `_uint8`, `_q4`, ...) name them;
# the first present wins.
VARIANTS: dict[str, tuple[str, ...]] = {
    "fp32": ("",),
    "fp16": ("_fp16",),
    "int8": ("_int8", "_quantized"),
    "uint8": ("_uint8",),
    "q4": ("_q4",),
    "q4f16": ("_q4f16",),
    "bnb4": ("_bnb4",),
}
# Precision names the onnx backend accepts only for these exports (dwconvert writes fp32/fp16/int8).
EXTRA_PRECISIONS = tuple(p for p in VARIANTS if p not in ("fp32", "fp16", "int8"))
DECODER_LAYOUTS = ("auto", "split", "merged")

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def graphs_dir(model_dir: Path) -> Path | None:
    """The folder holding the export's encoder graph(s): the directory itself or its onnx/."""
    for folder in (model_dir, model_dir / SUBFOLDER):
        if any(folder.glob(f"{ENCODER}*.onnx")):
            return folder
    return None


def is_optimum_export(model_dir: Path) -> bool:
    """optimum's file names with the checkpoint's config.json on top (and no dwkit manifest)."""
    return (model_dir / "config.json").is_file() and graphs_dir(model_dir) is not None


@dataclass(frozen=True)
class OptimumFiles:
    """The graphs one precision runs: an encoder and a split or a merged decoder."""

    precision: str
    encoder: Path
    decoder: Path  # decoder_model (split) or decoder_model_merged
    with_past: Path | None  # None: `decoder` is the merged graph


def _variant(folder: Path, stem: str, precision: str) -> Path | None:
    return next(
        (folder / f"{stem}{s}.onnx" for s in VARIANTS[precision] if (folder / f"{stem}{s}.onnx").is_file()),
        None,
    )


def precisions_present(folder: Path) -> list[str]:
    """Precisions with an encoder and a complete decoder (split or merged) in `folder`."""
    return [
        p
        for p in VARIANTS
        if _variant(folder, ENCODER, p)
        and (_variant(folder, MERGED, p) or (_variant(folder, DECODER, p) and _variant(folder, WITH_PAST, p)))
    ]


def resolve_files(model_dir: Path, precision: str, layout: str = "auto") -> OptimumFiles:
    """The files of `precision`; a missing variant names what is there (split before merged:
    plain graphs without an `If` node, as dwkit's own)."""
    folder = graphs_dir(model_dir)
    if folder is None:
        raise ModelError(f"{model_dir}: no {ENCODER}*.onnx here or in {SUBFOLDER}/ (not an optimum export)")
    if precision not in VARIANTS:
        raise ConfigError(
            f"onnx precision {precision!r} for an optimum export: choose one of {', '.join(VARIANTS)}"
        )
    if layout not in DECODER_LAYOUTS:
        raise ConfigError(f"onnx decoder={layout!r}: choose one of {', '.join(DECODER_LAYOUTS)}")
    encoder = _variant(folder, ENCODER, precision)
    decoder, with_past = _variant(folder, DECODER, precision), _variant(folder, WITH_PAST, precision)
    merged = _variant(folder, MERGED, precision)
    split_ok = decoder is not None and with_past is not None and layout != "merged"
    if encoder is None or not (split_ok or (merged is not None and layout != "split")):

        def name(stem: str) -> str:
            return " or ".join(f"{stem}{s}.onnx" for s in VARIANTS[precision])

        split, merged_name = f"{name(DECODER)} + {name(WITH_PAST)}", name(MERGED)
        decoders = {"split": split, "merged": merged_name}.get(layout, f"{merged_name} (or {split})")
        present = ", ".join(precisions_present(folder)) or "none complete"
        raise ModelError(
            f"{folder}: no {precision} variant: needs {name(ENCODER)} and {decoders}; "
            f"precisions present: {present} (choose one with --precision)"
        )
    if split_ok:
        assert decoder is not None
        return OptimumFiles(precision, encoder, decoder, with_past)
    assert merged is not None
    return OptimumFiles(precision, encoder, merged, None)


def _past_names(layers: int, part: str, prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}.{part}.{kind}" for n in range(layers) for kind in ("key", "value"))


@dataclass(frozen=True)
class OptimumNames:
    """optimum's cache tensor names for `layers` decoder layers, in graph order."""

    past_self: tuple[str, ...]
    past_cross: tuple[str, ...]
    present_self: tuple[str, ...]
    present_cross: tuple[str, ...]

    @classmethod
    def of(cls, layers: int) -> OptimumNames:
        return cls(
            _past_names(layers, "decoder", "past_key_values"),
            _past_names(layers, "encoder", "past_key_values"),
            _past_names(layers, "decoder", "present"),
            _past_names(layers, "encoder", "present"),
        )


class OptimumRunner:
    """The `GraphRunner` of optimum's decoder graphs (split or merged), through IO bindings
    as `onnx._OrtRunner` does, so caches stay OrtValues on the execution device."""

    def __init__(
        self, sessions: dict[Path, Any], files: OptimumFiles, gather: Any, info: ModelInfo, place: Any
    ):
        self.paths = {id(session): path for path, session in sessions.items()}
        encoder, decoder = sessions[files.encoder], sessions[files.decoder]
        with_past = sessions[files.with_past] if files.with_past else None
        self.encoder = encoder
        self.decoder = decoder
        self.step_session = with_past if with_past is not None else decoder
        self.merged = with_past is None
        self.gather = gather
        self.info = info
        self.place = place
        self.names = OptimumNames.of(info.decoder_layers)
        self.states_type = self._input_type(decoder, "encoder_hidden_states")
        self.cache_type = self._input_type(self.step_session, self.names.past_self[0])
        self._check(decoder, ("input_ids", "encoder_hidden_states"), ("logits", *self.names.present_self))
        step_inputs = ("input_ids", *self.names.past_self, *self.names.past_cross)
        self._check(self.step_session, step_inputs, ("logits", *self.names.present_self))

    def _check(self, session: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        """The names this runner binds are there, and the graph needs nothing else."""
        have_in = {i.name for i in session.get_inputs()}
        have_out = {o.name for o in session.get_outputs()}
        known = set(inputs) | {"use_cache_branch", "encoder_hidden_states"} | set(self.names.past_self)
        known |= set(self.names.past_cross)
        missing = [n for n in inputs if n not in have_in] + [n for n in outputs if n not in have_out]
        extra = sorted(have_in - known)
        if missing or extra:
            raise ModelError(
                f"{self.paths[id(session)]}: not optimum's Whisper decoder layout for {self.info.decoder_layers} "
                f"layers (missing {', '.join(missing) or 'nothing'}; unknown inputs {', '.join(extra) or 'none'})"
            )

    def _input_type(self, session: Any, name: str) -> Any:
        """numpy type of a float input (fp16 exports take and return float16)."""
        where = self.paths[id(session)]
        for graph_input in session.get_inputs():
            if graph_input.name == name:
                if graph_input.type not in _NUMPY_TYPES:
                    raise ModelError(f"{where}: input {name} is {graph_input.type}, not float or float16")
                return _NUMPY_TYPES[graph_input.type]
        raise ModelError(f"{where}: no input {name} (not an optimum Whisper graph)")

    def batch_size(self, value: Any) -> int:
        return int(value.shape()[0])

    def encode(self, mel: np.ndarray) -> Any:
        binding = self.encoder.io_binding()
        binding.bind_cpu_input(
            "input_features",
            np.ascontiguousarray(mel, dtype=self._input_type(self.encoder, "input_features")),
        )
        binding.bind_output("last_hidden_state", self.place.device, self.place.index)
        self.encoder.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def _empty_pasts(self, binding: Any, batch: int) -> None:
        """The merged graph's first step takes (ignored) pasts: bind them with length 0."""
        head_dim = self.info.d_model // self.info.decoder_heads
        empty = np.zeros((batch, self.info.decoder_heads, 0, head_dim), dtype=self.cache_type)
        for name in (*self.names.past_self, *self.names.past_cross):
            binding.bind_cpu_input(name, empty)
        binding.bind_cpu_input("use_cache_branch", np.array([False]))

    def decoder_init(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, list[Any], list[Any]]:
        binding = self.decoder.io_binding()
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_ortvalue_input("encoder_hidden_states", self._as_states(states))
        if self.merged:
            self._empty_pasts(binding, len(tokens))
        binding.bind_output("logits", "cpu")
        for name in (*self.names.present_self, *self.names.present_cross):
            binding.bind_output(name, self.place.device, self.place.index)
        self.decoder.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        n = len(self.names.present_self)
        return _float32(outputs[0]), list(outputs[1 : 1 + n]), list(outputs[1 + n :])

    def _as_states(self, states: Any) -> Any:
        """Encoder states in the decoder's input type (an fp16 encoder may feed an fp32 decoder)."""
        if _NUMPY_TYPES.get(states.data_type()) == self.states_type:
            return states
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(states.numpy().astype(self.states_type))

    def step_context(self, cross_kv: list[Any]) -> Any:
        binding = self.step_session.io_binding()
        for name, value in zip(self.names.past_cross, cross_kv):
            binding.bind_ortvalue_input(name, value)
        if self.merged:  # the cached branch reads neither: a one-frame placeholder satisfies the graph
            batch = self.batch_size(cross_kv[0])
            binding.bind_cpu_input(
                "encoder_hidden_states", np.zeros((batch, 1, self.info.d_model), dtype=self.states_type)
            )
            binding.bind_cpu_input("use_cache_branch", np.array([True]))
        return binding

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[Any], context: Any
    ) -> tuple[np.ndarray, list[Any]]:
        binding = context
        binding.bind_cpu_input("input_ids", tokens)
        for name, value in zip(self.names.past_self, self_kv):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.names.present_self:
            binding.bind_output(name, self.place.device, self.place.index)
        self.step_session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return _float32(outputs[0]), list(outputs[1:])


def _float32(value: Any) -> np.ndarray:
    return np.asarray(value.numpy(), dtype=np.float32)


class OptimumOnnxBackend(GraphStepBackend):
    """The onnx backend on an optimum export (`OnnxBackend.from_model_dir` hands such a directory here)."""

    name = "onnx"

    def __init__(self, runner: OptimumRunner, info: ModelInfo, files: OptimumFiles):
        self.runner = runner
        self.info = info
        self.files = files
        self.precision = files.precision

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> OptimumOnnxBackend:
        from dwkit.runtimes import onnx

        info = ModelInfo.from_hf_dir(model_dir)
        layout = config.options.get("decoder") or "auto"
        files = resolve_files(model_dir, config.precision or "fp32", str(layout))
        provider, place = onnx._provider_and_place(config)
        options = onnx._session_options(config)
        providers = onnx._providers(provider, place, None, config)
        paths = [p for p in (files.encoder, files.decoder, files.with_past) if p is not None]
        sessions = {p: onnx.open_session(p, provider, providers, options, config) for p in paths}
        gather_providers = onnx._providers("cuda" if provider != "cpu" else "cpu", place, None, config)
        gather = onnx._GatherRows(4 * info.decoder_layers, options, gather_providers, place)
        return cls(OptimumRunner(sessions, files, gather, info, place), info, files)

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        check_mel(mel, self.info)
        return EncoderOutput(data=self.runner.encode(mel), batch_size=mel.shape[0])

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return _float32(enc.data)
