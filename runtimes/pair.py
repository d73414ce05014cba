"""Encoder/decoder pairs: the encoder of one backend, the decoder of another, one checkpoint.

A 2-decoder-layer model such as distil-large-v3.5 spends most of its time in the encoder, and
the fastest encoder and the fastest decoder on a CPU come from different libraries
(transformers bf16 on AMX; CTranslate2 int8 for the decoder), so a pair runs each half where it
is fastest: `hf:bf16+ct2:int8` (`ENCODER_BACKEND:PRECISION+DECODER_BACKEND:PRECISION`).

A pair is one Backend. Its `encode` runs the encoder side and hands its states to the decoder
side once per window through two small hooks every pairable backend has: `encoder_array`
(states as float32 numpy, the ParityProbe's) and `encoder_states_from_array` (an EncoderOutput
of the backend's own kind built on that array). On the CPU at float32 neither copies: a torch
tensor's `.numpy()`, CTranslate2's `StorageView.from_array` and onnxruntime's
`OrtValue.ortvalue_from_numpy` all share the buffer (bf16 or a GPU costs one conversion).
Everything after encoding (generate, language detection, row selection, parity logits) is
the decoder side's. Each side is loaded with `RuntimeConfig.part` = its role, so it holds only
the half it runs where its library allows: hf drops the other half after loading, onnx and
openvino open only that half's graphs; CTranslate2 loads a model whole, so a ct2 side holds
both (its int8 encoder is ~0.6 GB at distil-large-v3.5's size).

Model directories: a pair runs from the transformers checkpoint; a side in another format is
converted from it once through the conversion cache that `dwkit parity` and `dwkit bench`
share (dwkit.conversion_cache). Directories converted elsewhere can be given instead with
the backend options `encoder_model=DIR` / `decoder_model=DIR` (both sides must then be the
same checkpoint: their shapes are checked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.errors import ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import Backend, EncoderOutput, RuntimeConfig

SEPARATOR = "+"
SIDES = ("encoder", "decoder")
# Backend options a pair reads itself (the sides get none: give per-side settings in a config).
PAIR_OPTIONS = tuple(f"{side}_model" for side in SIDES)
# What makes a backend pairable: it can take another backend's encoder states.
HOOK = "encoder_states_from_array"

logger = logging.getLogger(__name__)


def is_pair(name: str | None) -> bool:
    """Whether a backend name is a pair spec (`hf:bf16+ct2:int8`) rather than one backend."""
    return bool(name) and SEPARATOR in str(name)


@dataclass(frozen=True)
class Side:
    """One half of a pair: a backend at a precision (None: the backend's default)."""

    backend: str
    precision: str | None

    @property
    def text(self) -> str:
        return self.backend if self.precision is None else f"{self.backend}:{self.precision}"

    def resolved_precision(self) -> str:
        """The precision it runs at: as given, else the backend's default, else its most faithful."""
        from dwkit.runtimes import registry

        declared = registry.spec(self.backend)
        return (
            self.precision
            or declared.default_precision
            or declared.parity_precision
            or declared.precisions[0]
        )


@dataclass(frozen=True)
class PairSpec:
    """`ENCODER[:PRECISION]+DECODER[:PRECISION]`, checked against the registry."""

    encoder: Side
    decoder: Side

    @property
    def text(self) -> str:
        return f"{self.encoder.text}{SEPARATOR}{self.decoder.text}"

    @property
    def label(self) -> str:
        """For tables: `hf bf16 + ct2 int8`."""
        return " + ".join(side.text.replace(":", " ") for side in (self.encoder, self.decoder))

    @classmethod
    def parse(cls, text: str) -> PairSpec:
        parts = str(text).split(SEPARATOR)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ConfigError(
                f"pair {text!r}: expected ENCODER[:PRECISION]+DECODER[:PRECISION], e.g. hf:bf16+ct2:int8"
            )
        sides = []
        for role, part in zip(SIDES, parts):
            name, _, precision = part.strip().partition(":")
            sides.append(_checked_side(text, role, name, precision or None))
        return cls(*sides)

    @classmethod
    def of(cls, encoder: Side, decoder: Side) -> PairSpec:
        """A pair from separate sides (a config's [encoder] / [decoder] tables), checked."""
        text = f"{encoder.text}{SEPARATOR}{decoder.text}"
        return cls(
            _checked_side(text, "encoder", encoder.backend, encoder.precision),
            _checked_side(text, "decoder", decoder.backend, decoder.precision),
        )

    def side(self, role: str) -> Side:
        return self.encoder if role == "encoder" else self.decoder


def _checked_side(text: str, role: str, name: str, precision: str | None) -> Side:
    """The side, or one line saying what is wrong: unknown backend, not pairable, bad precision."""
    from dwkit.runtimes import registry

    known = registry.names()
    if name not in known:
        raise ConfigError(f"pair {text!r}: unknown {role} backend {name!r}; choose one of {', '.join(known)}")
    declared = registry.spec(name)
    if not callable(getattr(declared.backend_class, HOOK, None)):
        cannot = (
            "hand its encoder states over"
            if role == "encoder"
            else "take encoder states from another backend"
        )
        raise ConfigError(
            f"pair {text!r}: the {name} backend cannot be the {role} of a pair: it cannot {cannot} "
            f"(pairable backends: {', '.join(pairable())})"
        )
    if precision is not None and precision not in declared.accepted_precisions:
        raise ConfigError(
            f"pair {text!r}: {precision!r} is not a {name} precision ({role}); "
            f"choose one of {', '.join(declared.accepted_precisions)}"
        )
    return Side(name, precision)


def pairable() -> tuple[str, ...]:
    """The registered backends that can be either side of a pair."""
    from dwkit.runtimes import registry

    return tuple(
        s.name
        for s in registry.declarations().specs.values()
        if callable(getattr(s.backend_class, HOOK, None))
    )


def conversion_of(backend: str, precision: str) -> tuple[str, str] | None:
    """(format, precision) a checkpoint is converted to for `backend` at `precision`; None
    for backends that run the transformers checkpoint itself.

    CTranslate2 quantises when converting and again at load time: a compute type its
    converter knows is converted to directly (its size on disk is then the real one); any
    other (int16, ...) runs from the converter's default float16 directory.
    """
    from dwkit.runtimes import registry

    formats = registry.spec(backend).formats
    if "hf" in formats:
        return None
    if backend == "ct2":
        from dwkit.converters import FORMATS

        ct2 = FORMATS["ct2"]
        return ("ct2", precision if precision in ct2.precisions else ct2.default_precision)
    return (formats[-1], precision)  # trt reads (trt, onnx): it builds its engines from onnx


class PairBackend:
    """The encoder of `encoder`, everything else of `decoder` (one Backend to the engine)."""

    def __init__(self, pair: PairSpec, encoder: Backend, decoder: Backend):
        _check_same_model(pair, encoder.info, decoder.info)
        self.pair = pair
        self.name = pair.text
        self.encoder = encoder
        self.decoder = decoder
        self.info = decoder.info

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        states = self.encoder.encoder_array(self.encoder.encode(mel))  # type: ignore[attr-defined]
        return self.decoder.encoder_states_from_array(states)  # type: ignore[attr-defined, no-any-return]

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return self.decoder.encoder_array(enc)  # type: ignore[attr-defined, no-any-return]

    def encoder_states_from_array(self, array: np.ndarray) -> EncoderOutput:
        return self.decoder.encoder_states_from_array(array)  # type: ignore[attr-defined, no-any-return]

    def generate(self, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions) -> list[Hypothesis]:
        return self.decoder.generate(enc, prompts, opts)

    def detect_language(self, enc: EncoderOutput) -> list[dict[str, float]]:
        return self.decoder.detect_language(enc)

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        return self.decoder.select(enc, rows)

    def next_token_logits(self, enc: EncoderOutput, prompts: list[list[int]]) -> np.ndarray:
        return self.decoder.next_token_logits(enc, prompts)  # type: ignore[attr-defined, no-any-return]

    def encoder_digest(self) -> str | None:
        """Unknown: the states are another backend's encoder's, whatever the decoder side's
        own encoder is, so a draft model never takes them for its own."""
        return None

    def __getattr__(self, name: str) -> Any:
        """The decoder side's optional surface (step/start/reorder, align, cross_attentions):
        word timestamps and the parity probe ask the decoder, which holds the states."""
        if name in ("encoder", "decoder", "pair"):  # not set yet: during __init__ only
            raise AttributeError(name)
        return getattr(self.decoder, name)

    def close(self) -> None:
        for side in (self.encoder, self.decoder):
            side.close()


def _check_same_model(pair: PairSpec, encoder: ModelInfo, decoder: ModelInfo) -> None:
    """Two directories of one checkpoint: the encoder states must fit the decoder."""
    mine = (encoder.n_mels, encoder.d_model, encoder.vocab_size)
    theirs = (decoder.n_mels, decoder.d_model, decoder.vocab_size)
    if mine != theirs:
        raise ModelError(
            f"pair {pair.text}: the sides are different models (encoder n_mels, d_model, vocab {mine}; "
            f"decoder {theirs}): give both sides the same checkpoint"
        )


def load_pair(model_dir: Path, pair: PairSpec, config: RuntimeConfig) -> Backend:
    """Open both sides; a side whose format is not the checkpoint's is converted (cached).

    Equal sides (`ct2:int8+ct2:int8`) are that backend alone: one model, nothing handed over.
    """
    from dwkit.runtimes import registry

    options = dict(config.options or {})
    given = {role: options.pop(f"{role}_model", None) for role in SIDES}
    if options:
        raise ConfigError(
            f"pair {pair.text}: backend options {', '.join(sorted(options))} unknown; a pair reads "
            f"{', '.join(PAIR_OPTIONS)} (the sides' own settings are their defaults)"
        )
    dirs = {role: _side_dir(Path(model_dir), pair, role, given[role]) for role in SIDES}
    if pair.encoder == pair.decoder and dirs["encoder"] == dirs["decoder"]:
        side = pair.encoder
        return registry.load(
            dirs["encoder"], side.backend, replace(config, precision=side.resolved_precision(), options={})
        )
    opened: list[Backend] = []
    try:
        for role in SIDES:
            side = pair.side(role)
            runtime = replace(config, precision=side.resolved_precision(), options={}, part=role)
            opened.append(registry.load(dirs[role], side.backend, runtime))
        return PairBackend(pair, *opened)
    except BaseException:
        for backend in opened:
            backend.close()
        raise


def _side_dir(model_dir: Path, pair: PairSpec, role: str, given: Any) -> Path:
    from dwkit.runtimes import registry

    if given:
        return Path(str(given)).expanduser()
    side = pair.side(role)
    target = conversion_of(side.backend, side.resolved_precision())
    found = registry.backend_of(model_dir)
    if found == (target[0] if target else "hf"):
        return model_dir
    if found != "hf" or target is None:
        raise ModelError(
            f"pair {pair.text}: {model_dir} is a {found} model; a pair runs from the transformers "
            f"checkpoint (its {role} is converted once, cached), or give both directories with "
            f"--backend-option encoder_model=DIR --backend-option decoder_model=DIR"
        )
    from dwkit.parity.conversions import converted_candidate

    logger.info("pair %s: %s side from %s converted to %s %s (cached)", pair.text, role, model_dir, *target)
    return converted_candidate(model_dir, *target).path
