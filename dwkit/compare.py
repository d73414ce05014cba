"""Numerical comparison of two backends on the same input: the first level of parity.

Used by every converter to validate what it wrote (against transformers on a fixed input)
and by the parity gate. Token comparison is greedy without timestamps on the same window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dwkit.decoding.options import DecodeOptions
from dwkit.features import log_mel
from dwkit.runtimes.base import Backend


@dataclass
class NumericReport:
    encoder_max_abs: float | None  # None: the runtime exposes no encoder output (whisper.cpp)
    encoder_cosine: float | None
    logits_max_abs: float
    logits_cosine: float
    tokens_equal: bool
    first_divergence: int | None  # index of the first differing token, None when equal
    reference_tokens: list[int]
    candidate_tokens: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def within(self, logits_atol: float) -> bool:
        return self.logits_max_abs <= logits_atol and self.tokens_equal


FP32_LOGITS_ATOL = 1e-3  # optimum's own Whisper export tolerance


def gate(report: dict[str, Any], gated: bool, logits_atol: float = FP32_LOGITS_ATOL) -> dict[str, Any]:
    """A converter's verdict on a NumericReport: a full-precision conversion must reproduce
    transformers (first-step logits within `logits_atol`, identical greedy tokens); lower
    precisions are recorded, not gated."""
    failures = []
    if gated:
        if report["logits_max_abs"] > logits_atol:
            failures.append(f"first-step logits max abs diff {report['logits_max_abs']:.3g} > {logits_atol}")
        if not report["tokens_equal"]:
            failures.append(f"greedy tokens differ from index {report['first_divergence']}")
    return {
        "passed": not failures,
        "gated": gated,
        "failures": failures,
        "thresholds": {"logits_atol": logits_atol, "tokens_must_match": True} if gated else None,
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else 1.0


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def validation_mel(n_mels: int) -> np.ndarray:
    """The fixed validation input [1, n_mels, 3000]: the bundled demo speech (real words make
    token comparisons meaningful), or seeded noise if the data file is missing."""
    from importlib.resources import files

    from dwkit.audio import load_audio
    from dwkit.errors import DwkitError

    try:
        samples = load_audio(str(files("dwkit") / "data" / "demo.flac"))[: 16000 * 30]
    except (DwkitError, OSError):
        samples = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.05
    return log_mel(samples, n_mels)[None]


def compare_backends(
    reference: Backend, candidate: Backend, mel: np.ndarray, max_new_tokens: int = 64
) -> NumericReport:
    """Encoder states, first-step logits and greedy tokens of `candidate` against `reference`."""
    info = reference.info
    prompt = [info.sot]
    if info.multilingual and info.transcribe is not None:
        prompt += [info.lang_to_id.get("<|en|>", next(iter(info.lang_to_id.values()))), info.transcribe]
    prompt.append(info.no_timestamps)
    ref_enc, cand_enc = reference.encode(mel), candidate.encode(mel)
    ref_states = reference.encoder_array(ref_enc)
    try:
        cand_states: np.ndarray | None = candidate.encoder_array(cand_enc)
    except NotImplementedError:
        cand_states = None
    ref_logits = reference.next_token_logits(ref_enc, [prompt])
    cand_logits = candidate.next_token_logits(cand_enc, [prompt])
    opts = DecodeOptions(without_timestamps=True, max_new_tokens=max_new_tokens)
    ref_tokens = reference.generate(ref_enc, [prompt], opts)[0].tokens
    cand_tokens = candidate.generate(cand_enc, [prompt], opts)[0].tokens
    return NumericReport(
        encoder_max_abs=None if cand_states is None else float(np.abs(ref_states - cand_states).max()),
        encoder_cosine=None if cand_states is None else cosine(ref_states, cand_states),
        logits_max_abs=float(np.abs(ref_logits - cand_logits).max()),
        logits_cosine=cosine(ref_logits, cand_logits),
        tokens_equal=ref_tokens == cand_tokens,
        first_divergence=first_divergence(ref_tokens, cand_tokens),
        reference_tokens=ref_tokens,
        candidate_tokens=cand_tokens,
    )
