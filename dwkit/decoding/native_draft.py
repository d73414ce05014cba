"""A draft without a decoder step: CTranslate2 proposes through its own `generate`.

CTranslate2's Whisper exposes `generate` but no decoder step and no cache that survives a
call, so each proposal is one greedy `generate` over the kept tokens as a forced prefix, and
it picks tokens under CTranslate2's own rules (suppress tokens and blank, its timestamp rules).
That is enough for correctness: the main model verifies every proposed token under the shared
rules, so only the acceptance rate depends on it. It is not enough for speed: CTranslate2
decodes a forced prefix one step per token (measured on base int8, 2 threads: a proposal after
60 kept tokens takes 1.9 s, as long as decoding those 60 tokens), so a window costs O(n^2)
draft steps and a ct2 draft is slower than no draft. What would make it fast is in
CTranslate2's API, not here: a decoder step, or a cache kept between generate calls.
CTranslate2 cannot be the main model: verifying needs logits for tokens it is given.
"""

from __future__ import annotations

from typing import Any

from dwkit.decoding.options import DecodeOptions
from dwkit.runtimes.base import EncoderOutput


def can_propose(backend: Any) -> bool:
    """Whether `backend` holds a CTranslate2 Whisper this proposer can drive."""
    return type(getattr(backend, "model", None)).__module__.startswith("ctranslate2")


class GenerateProposer:
    """One row's proposals from a backend with a native generate (runtimes/ct2.py's CT2Backend,
    whose `model` is the `ctranslate2.models.Whisper`)."""

    def __init__(self, draft: Any, enc: EncoderOutput, row: int, prompt_len: int, opts: DecodeOptions):
        info = draft.info
        self.model = draft.model
        self.states = draft.select(enc, [row]).data
        self.prompt_len = prompt_len
        self.eot = info.eot
        self.suppress = list(info.suppress_tokens if opts.suppress_tokens is None else opts.suppress_tokens)
        self.suppress_blank = opts.suppress_blank
        index = opts.max_initial_timestamp_index
        self.max_initial = info.max_initial_timestamp_index if index is None else index

    def propose(self, tokens: list[int], count: int) -> list[int]:
        prefix = len(tokens) - self.prompt_len
        wanted = prefix + count
        # whisper.cc returns min(max_length // 2, max_length - (prompt_len - 1)) tokens, the
        # forced prefix included (measured with CTranslate2 4.x)
        max_length = max(2 * wanted, wanted + self.prompt_len - 1)
        result = self.model.generate(
            self.states,
            [tokens],
            max_length=max_length,
            sampling_topk=1,
            suppress_tokens=self.suppress,
            suppress_blank=self.suppress_blank,
            max_initial_timestamp_index=self.max_initial,
        )[0]
        proposal = [int(t) for t in result.sequences_ids[0][prefix:wanted]]
        return proposal if len(proposal) == count else [*proposal, self.eot]  # it stopped: end-of-text

    def keep(self, length: int) -> None:
        """Nothing to cut: CTranslate2 keeps no cache between calls."""
