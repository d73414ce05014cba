"""Numerical comparison of two backends on the same input: the first level of parity.

Used by every converter to validate what it wrote (against transformers on a fixed input,
judged by `gate` with the tolerances of `validation_limits`) and by the parity gate. Token comparison is greedy without timestamps on the same window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError
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


THRESHOLDS_FILE = "parity_thresholds.toml"  # its [validation] section holds the converters' gates


def validation_limits(fmt: str, precision: str) -> dict[str, Any] | None:
    """The gate a conversion to `fmt` at `precision` must pass ([validation.FMT.PRECISION] in
    dwkit/data/parity_thresholds.toml), or None when that precision is recorded, not gated."""
    from importlib.resources import files

    from dwkit.tomlfile import read_toml_file

    path = files("dwkit") / "data" / THRESHOLDS_FILE
    limits = read_toml_file(str(path)).get("validation", {}).get(fmt, {}).get(precision)
    unknown = sorted(set(limits or {}) - set(VALIDATION_KEYS))
    if unknown:
        raise ConfigError(f"{path}: [validation.{fmt}.{precision}] has unknown keys {unknown}")
    return dict(limits) if limits else None


# The keys of a [validation] table and what each demands of a NumericReport.
VALIDATION_KEYS = ("logits_atol", "logits_cosine_min", "tokens_must_match", "token_error_rate_max")


def gate(report: dict[str, Any], limits: dict[str, Any] | None) -> dict[str, Any]:
    """A converter's verdict on a NumericReport (as a dict; the token error rate is added to
    it): every limit in `limits` must hold; with no limits the numbers are only recorded."""
    report["token_error_rate"] = token_error_rate(report["reference_tokens"], report["candidate_tokens"])
    limits = limits or {}
    failures = []
    if "logits_cosine_min" in limits and report["logits_cosine"] < limits["logits_cosine_min"]:
        failures.append(f"logits cosine {report['logits_cosine']:.5f} < {limits['logits_cosine_min']}")
    if "logits_atol" in limits and report["logits_max_abs"] > limits["logits_atol"]:
        failures.append(
            f"first-step logits max abs diff {report['logits_max_abs']:.3g} > {limits['logits_atol']}"
        )
    if limits.get("tokens_must_match") and not report["tokens_equal"]:
        failures.append(f"greedy tokens differ from index {report['first_divergence']}")
    if "token_error_rate_max" in limits and report["token_error_rate"] > limits["token_error_rate_max"]:
        failures.append(
            f"greedy tokens differ ({report['token_error_rate']:.1%} edits, first at index "
            f"{report['first_divergence']}) > {limits['token_error_rate_max']:.0%}"
        )
    return {"passed": not failures, "gated": bool(limits), "failures": failures, "thresholds": limits or None}


def token_error_rate(reference: list[int], candidate: list[int]) -> float:
    """Edit distance between two token sequences over the reference length."""
    previous = list(range(len(candidate) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, cand in enumerate(candidate, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != cand)))
        previous = current
    return previous[-1] / max(len(reference), 1)


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
