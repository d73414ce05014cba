"""A main model paired with a draft model: the Backend the long-form engine sees.

Greedy windows are decoded speculatively (dwkit.decoding.speculative), so the transcript is
the main model's own; temperature-fallback windows (T > 0) are decoded by the main model
alone, without the draft, as are language detection and everything else. The pair is
refused when the draft cannot stand in for the main model's tokens (another tokenizer or
other special tokens) or when a model cannot take its part (CTranslate2, see `_role_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit import runtimes
from dwkit.decoding.native_draft import can_propose
from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.decoding.speculative import DraftSchedule, DraftStats, speculative_decode
from dwkit.errors import ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import Backend, EncoderOutput, RuntimeConfig, StepBackend
from dwkit.schema import option, validate

# The ModelInfo facts both models must agree on for a draft token to mean the same thing.
SHARED_FACTS = (
    "vocab_size", "eot", "sot", "sot_prev", "no_timestamps", "transcribe", "translate", "multilingual",
    "lang_to_id", "n_mels",
)  # fmt: skip


@dataclass
class DraftOptions:
    """`[draft]`: a draft ("assistant") model for speculative decoding of greedy windows."""

    model: str | None = option(
        None, flag="--draft-model", help="draft model directory or hub id (none: no draft)"
    )
    backend: str | None = option(
        None,
        flag="--draft-backend",
        choices=lambda: runtimes.names(),  # read when checked: plugins join the registry
        help="the draft's backend (none: the one its directory's format names)",
    )
    precision: str | None = option(
        None, flag="--draft-precision", help="the draft backend's own precision name (none: its default)"
    )
    tokens: int = option(
        5, minimum=1, flag="--draft-tokens", help="draft tokens proposed per main-model step"
    )
    adaptive: bool = option(
        False,
        flag="--draft-adaptive",
        help="adapt the draft tokens per step: +2 after a fully accepted proposal, -1 otherwise",
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class _PairStates:
    main: EncoderOutput
    draft: EncoderOutput


class AssistedBackend:
    """`main` decoding with `draft`'s proposals; `stats` accumulates over every call."""

    def __init__(self, main: Backend, draft: Backend, schedule: DraftSchedule, pair_dirs: tuple[Path, Path]):
        for role, backend in (("main", main), ("draft", draft)):
            problem = _role_problem(role, backend)
            if problem:
                raise ConfigError(problem)
        mismatch = pair_mismatch(main.info, draft.info, *pair_dirs)
        if mismatch:
            raise ConfigError(f"draft model {pair_dirs[1]} cannot draft for {pair_dirs[0]}: {mismatch}")
        self.main: StepBackend = main  # type: ignore[assignment]
        self.draft: Any = draft  # a StepBackend, or a CTranslate2 one proposing through generate
        self.schedule = schedule
        self.stats = DraftStats()
        self.name = main.name
        self.info = main.info
        digest = self.main.encoder_digest()
        # Identical encoder weights (distil students keep the teacher's), on the same runtime,
        # dtype and device: the draft reads the main model's encoder states, never its own.
        draft_digest = getattr(self.draft, "encoder_digest", lambda: None)()  # ct2 has none
        self.shares_encoder = digest is not None and digest == draft_digest

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        main = self.main.encode(mel)
        draft = main if self.shares_encoder else self.draft.encode(mel)
        return EncoderOutput(data=_PairStates(main, draft), batch_size=main.batch_size)

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        main = self.main.select(enc.data.main, rows)
        draft = main if self.shares_encoder else self.draft.select(enc.data.draft, rows)
        return EncoderOutput(data=_PairStates(main, draft), batch_size=len(rows))

    def generate(self, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions) -> list[Hypothesis]:
        if opts.temperature > 0:  # a fallback window: sampled by the main model, without the draft
            return self.main.generate(enc.data.main, prompts, opts)
        return speculative_decode(
            self.main, enc.data.main, self.draft, enc.data.draft, prompts, opts, self.schedule, self.stats
        )

    def detect_language(self, enc: EncoderOutput) -> list[dict[str, float]]:
        return self.main.detect_language(enc.data.main)

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return self.main.encoder_array(enc.data.main)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.main.close()
        self.draft.close()


def _role_problem(role: str, backend: Backend) -> str | None:
    if isinstance(backend, StepBackend):
        return None
    if role == "draft" and can_propose(backend):
        return None
    if role == "main":
        return (
            f"the {backend.name} backend cannot be the main model of speculative decoding: verifying "
            "draft tokens needs the main model's logits at given positions, one decoder step over "
            "several tokens, and CTranslate2's Whisper exposes only generate/detect_language/align "
            "(no step, no logits for tokens it is given); run the main model on hf, onnx, ggml or trt "
            "(ct2 can be the draft)"
        )
    return (
        f"the {backend.name} backend cannot be the draft model: it has neither a decoder step nor "
        "a CTranslate2-style generate to propose tokens with; run the draft on hf, ct2, onnx, ggml or trt"
    )


def pair_mismatch(main: ModelInfo, draft: ModelInfo, main_dir: Path, draft_dir: Path) -> str | None:
    """The first difference that makes draft tokens mean something else to the main model."""
    for fact in SHARED_FACTS:
        ours, theirs = getattr(main, fact), getattr(draft, fact)
        if ours != theirs:
            if isinstance(ours, dict):
                ours, theirs = f"{len(ours)} languages", f"{len(theirs)} languages"
            return f"{fact} differs (main {ours}, draft {theirs}); draft and main must share the tokenizer"
    if main.n_text_ctx > draft.n_text_ctx:
        return f"the draft's context ({draft.n_text_ctx} tokens) is shorter than the main model's ({main.n_text_ctx})"
    ours_vocab, theirs_vocab = _vocab(main_dir), _vocab(draft_dir)
    if ours_vocab != theirs_vocab:
        token = next(iter(sorted(set(ours_vocab.items()) ^ set(theirs_vocab.items()))), ("?", 0))
        return f"tokenizer.json differs (token {token[0]!r}, id {token[1]}); draft and main must share the tokenizer"
    return None


def _vocab(model_dir: Path) -> dict[str, int]:
    """The token table of a model directory's tokenizer.json (every format keeps one)."""
    from tokenizers import Tokenizer as HFTokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return {}
    try:
        return HFTokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ModelError(f"{path}: unreadable tokenizer ({exc})") from exc


def with_draft(
    main: Backend, main_dir: Path, draft_dir: Path, options: DraftOptions, runtime: RuntimeConfig
) -> AssistedBackend:
    """Load the draft from `draft_dir` (its backend from `options` or its directory; the main
    model's device and threads, the draft's own precision) and pair it with `main`."""
    if options.backend is not None:
        found = runtimes.backend_of(draft_dir)
        if found not in runtimes.spec(options.backend).formats:
            raise ConfigError(
                f"draft.backend = {options.backend}: {draft_dir} holds a {found} model; set "
                f"--draft-backend {found} (or leave it out), or convert it with dwconvert --to {options.backend}"
            )
    draft_runtime = RuntimeConfig(device=runtime.device, precision=options.precision, threads=runtime.threads)
    draft = runtimes.load(draft_dir, options.backend, draft_runtime)
    try:
        return AssistedBackend(
            main, draft, DraftSchedule(options.tokens, options.adaptive), (main_dir, draft_dir)
        )
    except ConfigError:
        draft.close()
        raise
