"""Greedy/sampling and beam search over a StepBackend, using the shared logit rules.

The backend answers only "logits for these tokens"; choosing tokens, the rules, stopping,
and scores live here, once. Greedy reproduces transformers' `generate` (scores are
log-softmax of the processed logits, the end-of-text token counts in the average).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.decoding.rules import LogitRules, log_softmax, logsumexp, no_speech_probs, sample_begin, softmax

if TYPE_CHECKING:
    from dwkit.runtimes.base import EncoderOutput, StepBackend


def decode(
    backend: StepBackend, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions
) -> list[Hypothesis]:
    """One hypothesis per prompt, prompt (forced prefix included) excluded; prompts of different
    lengths (or prefix lengths) are decoded in groups."""
    results: list[Hypothesis | None] = [None] * len(prompts)
    by_length: dict[tuple[int, int], list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault((len(prompt), sample_begin(prompt, backend.info)), []).append(i)
    for rows in by_length.values():
        group = np.array([prompts[i] for i in rows], dtype=np.int64)
        index = np.array(rows, dtype=np.int64)
        if opts.beam_size > 1 and opts.temperature == 0.0:
            hyps = _beam(backend, enc, index, group, opts)
        else:
            hyps = _greedy(backend, enc, index, group, opts)
        for i, hyp in zip(rows, hyps):
            results[i] = hyp
    return [h for h in results if h is not None]


def budget(backend: StepBackend, prompt_len: int, opts: DecodeOptions) -> int:
    room = backend.info.n_text_ctx - prompt_len
    return room if opts.max_new_tokens is None else min(room, opts.max_new_tokens)


def sot_index(prompt: np.ndarray, sot: int) -> int:
    hits = np.flatnonzero(prompt == sot)
    return int(hits[0]) if hits.size else 0


def _greedy(
    backend: StepBackend,
    enc: EncoderOutput,
    index: np.ndarray,
    prompts: np.ndarray,
    opts: DecodeOptions,
) -> list[Hypothesis]:
    info = backend.info
    batch, prompt_len = prompts.shape
    rules = LogitRules(info, opts, sample_begin(prompts[0], info))
    rng = np.random.default_rng(opts.seed)
    cache = backend.start(enc, index)
    prompt_logits = backend.step(prompts, cache)
    no_speech = no_speech_probs(prompt_logits, sot_index(prompts[0], info.sot), info)
    logits = np.array(prompt_logits[:, -1], dtype=np.float32)
    tokens = prompts
    sum_logprob = np.zeros(batch)
    finished = np.zeros(batch, dtype=bool)
    lengths = np.zeros(batch, dtype=np.int64)  # generated tokens, end-of-text included
    for _ in range(budget(backend, prompt_len, opts)):
        rules.apply(tokens, logits)
        if opts.temperature > 0:
            probs = softmax(logits / opts.temperature)
            chosen = np.array([rng.choice(probs.shape[-1], p=p) for p in probs])
        else:
            chosen = logits.argmax(axis=-1)
        chosen = np.where(finished, info.eot, chosen)
        active = ~finished
        rows = np.flatnonzero(active)
        # log-softmax of the chosen token only: one logsumexp instead of a full-vocab copy
        sum_logprob[rows] += logits[rows, chosen[rows]] - logsumexp(logits[rows])
        lengths[active] += 1
        finished |= chosen == info.eot
        tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
        if finished.all():
            break
        logits = np.array(backend.step(chosen[:, None], cache)[:, -1], dtype=np.float32)
    hyps = []
    for k in range(batch):
        generated = [int(t) for t in tokens[k, prompt_len:][: lengths[k]]]
        if generated and generated[-1] == info.eot:
            generated = generated[:-1]
        hyps.append(
            Hypothesis(
                tokens=generated,
                sum_logprob=float(sum_logprob[k]),
                avg_logprob=float(sum_logprob[k] / max(lengths[k], 1)),
                no_speech_prob=float(no_speech[k]),
                temperature=opts.temperature,
                finished=bool(finished[k]),
            )
        )
    return hyps


def _beam(
    backend: StepBackend,
    enc: EncoderOutput,
    index: np.ndarray,
    prompts: np.ndarray,
    opts: DecodeOptions,
) -> list[Hypothesis]:
    """OpenAI-style beam search: `beam_size` live beams, stop after beam_size * patience finish."""
    info = backend.info
    batch, prompt_len = prompts.shape
    beams = opts.beam_size
    rules = LogitRules(info, opts, sample_begin(prompts[0], info))
    cache = backend.start(enc, np.repeat(index, beams))
    tokens = np.repeat(prompts, beams, axis=0)
    prompt_logits = backend.step(tokens, cache)
    no_speech = no_speech_probs(prompt_logits[::beams], sot_index(prompts[0], info.sot), info)
    logits = prompt_logits[:, -1].astype(np.float32)
    scores = np.zeros(batch * beams)
    scores.reshape(batch, beams)[:, 1:] = -np.inf  # identical beams at first: expand only one
    done: list[list[tuple[float, list[int], float]]] = [[] for _ in range(batch)]
    max_done = max(1, round(beams * opts.patience))
    for _ in range(budget(backend, prompt_len, opts)):
        rules.apply(tokens, logits)
        logprobs = log_softmax(logits)
        candidates = (scores[:, None] + logprobs).reshape(batch, -1)
        order = np.argsort(-candidates, axis=-1)[:, : 2 * beams]
        keep_rows, keep_tokens, keep_scores = [], [], []
        for b in range(batch):
            picked = 0
            for flat in order[b]:
                row, token = b * beams + flat // logprobs.shape[-1], int(flat % logprobs.shape[-1])
                score = float(candidates[b, flat])
                if not np.isfinite(score):
                    break
                if token == info.eot:
                    if len(done[b]) < max_done:
                        seq = [int(t) for t in tokens[row, prompt_len:]]
                        done[b].append((score, seq, score))
                    continue
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(score)
                picked += 1
                if picked == beams:
                    break
            while picked < beams:  # pad with dead beams so shapes stay fixed
                keep_rows.append(b * beams)
                keep_tokens.append(info.eot)
                keep_scores.append(-np.inf)
                picked += 1
        rows = np.array(keep_rows)
        chosen = np.array(keep_tokens)
        tokens = np.concatenate([tokens[rows], chosen[:, None]], axis=1)
        scores = np.array(keep_scores)
        cache = backend.reorder(cache, rows)
        if all(len(d) >= max_done for d in done):
            break
        logits = backend.step(chosen[:, None], cache)[:, -1].astype(np.float32)
    hyps = []
    for b in range(batch):
        finished = bool(done[b])
        pool = done[b] or [
            (
                float(scores[b * beams + j]),
                [int(t) for t in tokens[b * beams + j, prompt_len:]],
                0.0,
            )
            for j in range(beams)
        ]
        best = max(pool, key=lambda item: _length_normalised(item[0], len(item[1]) + finished, opts))
        length = len(best[1]) + int(finished)
        hyps.append(
            Hypothesis(
                tokens=best[1],
                sum_logprob=best[0],
                avg_logprob=best[0] / max(length, 1),
                no_speech_prob=float(no_speech[b]),
                temperature=0.0,
                finished=finished,
            )
        )
    return hyps


def _length_normalised(score: float, length: int, opts: DecodeOptions) -> float:
    if opts.length_penalty is None:
        return score / max(length, 1)
    return score / (((5 + length) / 6) ** opts.length_penalty)


def detect_language(backend: StepBackend, enc: EncoderOutput) -> list[dict[str, float]]:
    """Language probabilities from the logits after <|startoftranscript|>, as Whisper does."""
    info = backend.info
    if not info.lang_to_id:
        return [{"en": 1.0} for _ in range(enc.batch_size)]
    index = np.arange(enc.batch_size)
    cache = backend.start(enc, index)
    logits = backend.step(np.full((enc.batch_size, 1), info.sot, dtype=np.int64), cache)[:, -1]
    ids = np.array(list(info.lang_to_id.values()))
    probs = softmax(logits[:, ids].astype(np.float32))
    codes = [name[2:-2] for name in info.lang_to_id]
    return [dict(zip(codes, map(float, row))) for row in probs]
