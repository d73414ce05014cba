"""Speculative (assisted) greedy decoding: a draft proposes, the main model verifies.

The draft model proposes up to K tokens one step at a time; the main model scores all of
them in ONE step call over the K+1 positions; the shared logit rules are applied to the
main model's logits at every verified position exactly as the plain greedy decoder applies
them, and the longest prefix the main model would itself have chosen is kept, plus the main
model's own token at the first disagreement (or after the last proposal). So the output is
the main model's own greedy output token for token; the draft only changes how many main
steps it takes. Rejected positions are cut from both caches (`StepBackend.truncate`, or the
cache is rebuilt from the kept tokens where a backend has no native rollback).

Rows are decoded one at a time, as transformers' assisted generation does: rows accept
different numbers of tokens, so their caches would have different lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.decoding.rules import LogitRules, logsumexp, no_speech_probs, sample_begin
from dwkit.decoding.search import budget, sot_index

if TYPE_CHECKING:
    from dwkit.runtimes.base import EncoderOutput, StepBackend

MAX_DRAFT_TOKENS = 64  # the adaptive schedule's ceiling


@dataclass
class DraftStats:
    """How well the draft did: the acceptance rate is accepted / proposed."""

    proposed: int = 0  # draft tokens offered to the main model
    accepted: int = 0  # of those, the ones the main model kept
    main_steps: int = 0  # main-model step calls after the prompt (each verifies a proposal)
    tokens: int = 0  # tokens emitted, end-of-text included

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_main_step(self) -> float:
        return self.tokens / self.main_steps if self.main_steps else 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "proposed": self.proposed,
            "accepted": self.accepted,
            "main_steps": self.main_steps,
            "tokens": self.tokens,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "tokens_per_main_step": round(self.tokens_per_main_step, 3),
        }


@dataclass(frozen=True)
class DraftSchedule:
    """How many tokens the draft proposes: fixed, or adapted as transformers' assistant's
    "heuristic" schedule does (+2 after a fully accepted proposal, -1 otherwise, at least 1)."""

    tokens: int = 5
    adaptive: bool = False

    def next(self, current: int, proposed: int, accepted: int) -> int:
        if not self.adaptive or proposed == 0:
            return current
        return min(current + 2, MAX_DRAFT_TOKENS) if accepted == proposed else max(current - 1, 1)


class _Track:
    """One row's decoder cache on one model and the tokens it holds, so it can be cut back."""

    def __init__(self, backend: StepBackend, enc: EncoderOutput, row: int):
        self.backend = backend
        self.enc = enc
        self.index = np.array([row], dtype=np.int64)
        self.cache: Any = backend.start(enc, self.index)
        self.seen: list[int] = []

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Logits [len(tokens), vocab] for the positions after each of `tokens`."""
        logits = self.backend.step(np.array([tokens], dtype=np.int64), self.cache)[0]
        self.seen.extend(tokens)
        return logits

    def keep(self, length: int) -> None:
        if length >= len(self.seen):
            return
        cut = self.backend.truncate(self.cache, length)
        if cut is not None:
            self.cache = cut
            self.seen = self.seen[:length]
            return
        kept, self.seen = self.seen[:length], []  # no native rollback: rebuild from the kept tokens
        self.cache = self.backend.start(self.enc, self.index)
        if kept:
            self.feed(kept)


def speculative_decode(
    main: StepBackend,
    main_enc: EncoderOutput,
    draft: Any,
    draft_enc: EncoderOutput,
    prompts: list[list[int]],
    opts: DecodeOptions,
    schedule: DraftSchedule,
    stats: DraftStats | None = None,
) -> list[Hypothesis]:
    """Greedy hypotheses of `main`, one per prompt, with `draft` proposing; `stats` is added to."""
    problem = beam_problem(opts.beam_size) or (
        f"temperature {opts.temperature:g}: decode sampled windows with the main model alone"
        if opts.temperature > 0
        else None
    )
    if problem:
        from dwkit.errors import ConfigError

        raise ConfigError(f"speculative decoding: {problem}")
    stats = stats if stats is not None else DraftStats()
    return [
        _decode_row(main, main_enc, draft, draft_enc, row, prompt, opts, schedule, stats)
        for row, prompt in enumerate(prompts)
    ]


def beam_problem(beam_size: int) -> str | None:
    """Why beam search cannot run with a draft (None for greedy)."""
    if beam_size == 1:
        return None
    return (
        f"decode.beam_size = {beam_size} with a draft model: speculative decoding is greedy only "
        "(its output is the main model's greedy output); set beam_size = 1 or drop the draft model"
    )


def _decode_row(
    main: StepBackend,
    main_enc: EncoderOutput,
    draft: Any,
    draft_enc: EncoderOutput,
    row: int,
    prompt: list[int],
    opts: DecodeOptions,
    schedule: DraftSchedule,
    stats: DraftStats,
) -> Hypothesis:
    info = main.info
    rules = LogitRules(info, opts, sample_begin(prompt, info))  # a forced prefix counts as decoded
    target = _Track(main, main_enc, row)
    helper = proposer(draft, draft_enc, row, len(prompt), opts)
    prompt_logits = target.feed(prompt)
    no_speech = no_speech_probs(prompt_logits[None], sot_index(np.array(prompt), info.sot), info)[0]
    tokens = list(prompt)
    limit = len(prompt) + budget(main, len(prompt), opts)
    sum_logprob, finished, k = 0.0, False, schedule.tokens
    pending, proposal = prompt_logits[-1:], []  # main logits for the next position; nothing proposed
    while len(tokens) < limit:
        accepted = 0
        for position, logits in enumerate(pending):  # position i verifies proposal[i]
            scores = np.array(logits[None], dtype=np.float32)
            rules.apply(np.array([tokens]), scores)
            chosen = int(scores[0].argmax())
            sum_logprob += float(scores[0, chosen] - logsumexp(scores[0]))
            tokens.append(chosen)
            finished = chosen == info.eot
            if finished or position == len(proposal) or chosen != proposal[position]:
                break
            accepted += 1
        stats.proposed += len(proposal)
        stats.accepted += accepted
        if finished or len(tokens) >= limit:
            break
        k = schedule.next(k, len(proposal), accepted)
        target.keep(len(tokens) - 1)  # the main cache holds every kept token but the newest
        helper.keep(len(tokens) - 1)
        room = limit - len(tokens) - 1  # the main model adds one token of its own per step
        proposal = helper.propose(tokens, min(k, room)) if room > 0 else []
        pending = target.feed([tokens[-1], *proposal])  # verify: all positions in one step
        stats.main_steps += 1
    generated = tokens[len(prompt) :]
    stats.tokens += len(generated)
    length = len(generated)
    if finished:
        generated = generated[:-1]
    return Hypothesis(
        tokens=generated,
        sum_logprob=sum_logprob,
        avg_logprob=sum_logprob / max(length, 1),
        no_speech_prob=float(no_speech),
        temperature=0.0,
        finished=finished,
    )


class _StepProposer:
    """A step-by-step draft: greedy under the same rules (so it rarely proposes what the main
    model cannot choose), its cache cut back to the kept tokens after each verification."""

    def __init__(
        self, draft: StepBackend, enc: EncoderOutput, row: int, prompt_len: int, opts: DecodeOptions
    ):
        self.track = _Track(draft, enc, row)
        self.rules = LogitRules(draft.info, opts, prompt_len)
        self.eot = draft.info.eot

    def propose(self, tokens: list[int], count: int) -> list[int]:
        proposal: list[int] = []
        for _ in range(count):
            seq = tokens + proposal
            scores = np.array(self.track.feed(seq[len(self.track.seen) :])[-1:], dtype=np.float32)
            self.rules.apply(np.array([seq]), scores)
            proposal.append(int(scores[0].argmax()))
            if proposal[-1] == self.eot:
                break
        return proposal

    def keep(self, length: int) -> None:
        """The cache holds at most `length` kept tokens (it never saw a proposal's last token)."""
        self.track.keep(min(len(self.track.seen), length))


def proposer(draft: Any, enc: EncoderOutput, row: int, prompt_len: int, opts: DecodeOptions) -> Any:
    """The draft's proposer for one row: step by step, or through a native generate."""
    from dwkit.runtimes.base import StepBackend

    if isinstance(draft, StepBackend):
        return _StepProposer(draft, enc, row, prompt_len, opts)
    from dwkit.decoding.native_draft import GenerateProposer

    return GenerateProposer(draft, enc, row, prompt_len, opts)
