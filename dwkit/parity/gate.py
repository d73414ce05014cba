"""The gate: the transformers baseline on the source checkpoint (computed once, lazily) and
the check of each candidate against it, level by level and mode by mode.

1. numerics: encoder states and first-step logits on the first 30 s of each clip (max abs
   diff, cosine); a backend that cannot expose one of them gets 'n/a', not a failure;
2. tokens: the greedy tokens the long-form engine decoded for every 30 s window (exact-match
   rate over windows, first divergence);
3. transcripts: WER of the candidate's transcript against the baseline's after Whisper's
   English normaliser, and the deviation of matched segment start/end times;

levels 2 and 3 once per mode. The tokens of level 2 are recorded from the same transcription
runs that level 3 scores, so each backend transcribes each clip once per mode.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import ConfigError, DwkitError, ModelError
from dwkit.parity.audio import AudioSet
from dwkit.parity.candidates import Candidate
from dwkit.parity.config import BASELINE_BACKEND, BASELINE_PRECISION, MODES, WORDS_LEVEL, ParityConfig
from dwkit.parity.measures import transcripts_deviation, window_agreement, word_agreement
from dwkit.parity.results import CandidateReport, Check, LevelResult
from dwkit.parity.transcribe import ModeRun, no_timestamps_prompt, transcribe_clips


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, DwkitError) else f"{type(exc).__name__}: {text}"


# --- the gate ------------------------------------------------------------------------------


ProgressFn = Callable[[str], None]  # called with a description as each step starts


class ParityGate:
    """The transformers baseline on `model_dir` (computed once, lazily) and checks of candidates."""

    def __init__(
        self,
        model_dir: str | Path,
        audio: AudioSet | None = None,
        modes: Sequence[str] = MODES,
        config: ParityConfig | None = None,
        device: str = "cpu",
        threads: int = 0,
        progress: ProgressFn | None = None,
    ):
        from dwkit.runtimes import backend_of

        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ConfigError(f"modes {list(modes)}: choose from {', '.join(MODES)}")
        self.model_dir = Path(model_dir).expanduser()
        if backend_of(self.model_dir) != BASELINE_BACKEND:
            raise ModelError(f"{self.model_dir}: the baseline must be a transformers checkpoint")
        self.audio = audio if audio is not None else AudioSet.builtin()
        self.modes = tuple(modes)
        self.config = config or ParityConfig.load()
        self.device = device
        self.threads = threads
        self.progress = progress
        self._baseline: Any = None
        self._tokenizer: Any = None
        self._runs: dict[str, ModeRun] = {}
        self._numerics: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._labels: set[str] = set()

    # -- baseline ---------------------------------------------------------------------------

    def _step(self, description: str) -> None:
        if self.progress:
            self.progress(description)

    def _runtime(self, backend: str, precision: str | None):  # type: ignore[no-untyped-def]
        from dwkit.runtimes.base import RuntimeConfig

        return RuntimeConfig(
            device=self.device,
            precision=precision,
            threads=self.threads,
            options=self.config.runtime_options(backend),
        )

    @property
    def baseline(self) -> Any:
        if self._baseline is None:
            from dwkit.runtimes import load
            from dwkit.tokenizer import Tokenizer

            self._step("baseline hf:fp32 load")
            self._baseline = load(
                self.model_dir, BASELINE_BACKEND, self._runtime(BASELINE_BACKEND, BASELINE_PRECISION)
            )
            self._tokenizer = Tokenizer.from_model_dir(self.model_dir, self._baseline.info)
        return self._baseline

    def baseline_run(self, mode: str) -> ModeRun:
        if mode not in self._runs:
            backend = self.baseline
            self._step(f"baseline hf:fp32 {mode}")
            self._runs[mode] = self._transcribe(backend, self._tokenizer, mode)
        return self._runs[mode]

    def baseline_numerics(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(encoder states, first-step logits) of the baseline for each clip's first window."""
        if self._numerics is None:
            backend = self.baseline
            prompt = no_timestamps_prompt(backend.info)
            self._numerics = []
            for mel in self._mels(backend.info.n_mels):
                enc = backend.encode(mel)
                self._numerics.append((backend.encoder_array(enc), backend.next_token_logits(enc, [prompt])))
        return self._numerics

    def baseline_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "backend": BASELINE_BACKEND,
            "precision": BASELINE_PRECISION,
            "path": str(self.model_dir),
        }
        summary["transcripts"] = {mode: [t.text for t in run.transcripts] for mode, run in self._runs.items()}
        summary["seconds"] = {mode: round(run.seconds, 3) for mode, run in self._runs.items()}
        return summary

    def _mels(self, n_mels: int) -> list[np.ndarray]:
        from dwkit.features import N_SAMPLES, log_mel

        return [log_mel(clip.samples[:N_SAMPLES], n_mels)[None] for clip in self.audio.short]

    def _transcribe(self, backend: Any, tokenizer: Any, mode: str) -> ModeRun:
        return transcribe_clips(
            backend, tokenizer, self.config.longform(mode), self.audio.for_mode(mode), mode
        )

    # -- candidates -------------------------------------------------------------------------

    def label(self, candidate: Candidate, precision: str | None) -> str:
        """`backend:dirname:precision`, made unique within this gate."""
        base = f"{candidate.backend}:{candidate.path.name}:{precision or '?'}"
        label, n = base, 1
        while label in self._labels:
            n += 1
            label = f"{base}#{n}"
        self._labels.add(label)
        return label

    def check(self, candidate: Candidate) -> CandidateReport:
        """Every level and mode of one candidate; a candidate that fails to load or run fails with its error."""
        from dwkit.runtimes import load
        from dwkit.tokenizer import Tokenizer

        precision = candidate.resolve_precision()
        table, limits = self.config.thresholds(candidate.backend, precision)
        label = self.label(candidate, precision)
        report = CandidateReport(candidate, label, precision, table, limits, [])
        self.baseline  # noqa: B018 - the baseline loads (and its errors surface) before any candidate
        self._step(f"{label} load")
        started = time.perf_counter()
        try:
            backend = load(
                candidate.path, candidate.backend, self._runtime(candidate.backend, candidate.precision)
            )
            tokenizer = Tokenizer.from_model_dir(candidate.path, backend.info)
            self._check_same_model(backend)
        except Exception as exc:  # noqa: BLE001 - a candidate that does not load fails the gate, it does not stop it
            error = f"could not load: {_one_line(exc)}"
            report.results = [LevelResult(label, level, mode, error=error) for level, mode in self.cases()]
            return report
        report.load_seconds = time.perf_counter() - started
        try:
            report.results.append(self._check_numerics(label, backend, limits))
            for mode in self.modes:
                tokens, transcripts, run = self._check_mode(label, backend, tokenizer, mode, limits)
                report.results += [tokens, transcripts]
                if run is not None:
                    report.transcripts[mode] = [t.text for t in run.transcripts]
                if WORDS_LEVEL in self.config.mode_levels(mode):
                    report.results.append(self._check_words(label, mode, run, table, transcripts.error))
        finally:
            backend.close()
            del backend
            gc.collect()
        return report

    def cases(self) -> list[tuple[str, str | None]]:
        """(level, mode) of every result a candidate gets, in report order."""
        return [("numerics", None)] + [
            (level, mode) for mode in self.modes for level in self.config.mode_levels(mode)
        ]

    def _check_same_model(self, backend: Any) -> None:
        ref, cand = self.baseline.info, backend.info
        if (ref.n_mels, ref.vocab_size) != (cand.n_mels, cand.vocab_size):
            raise ModelError(
                f"not a conversion of the baseline model: n_mels/vocab {cand.n_mels}/{cand.vocab_size}, "
                f"baseline {ref.n_mels}/{ref.vocab_size}"
            )

    def _check_numerics(self, label: str, backend: Any, limits: dict[str, float]) -> LevelResult:
        result = LevelResult(label, "numerics", None)
        started = time.perf_counter()
        try:
            reference = self.baseline_numerics()
            self._step(f"{label} numerics")
            prompt = no_timestamps_prompt(self.baseline.info)
            measured = _numerics(backend, self._mels(backend.info.n_mels), reference, prompt)
            result.checks = [
                Check(metric, value, limits.get(metric)) for metric, (value, _) in measured.items()
            ]
            result.details = {"clips": len(self.audio.short), "prompt": prompt}
            not_available = {m: note for m, (value, note) in measured.items() if value is None}
            if not_available:  # why a metric is 'n/a': the backend's own explanation
                result.details["not_available"] = not_available
        except Exception as exc:  # noqa: BLE001 - recorded as this level's error
            result.error = _one_line(exc)
        result.seconds = time.perf_counter() - started
        return result

    def _check_mode(
        self, label: str, backend: Any, tokenizer: Any, mode: str, limits: dict[str, float]
    ) -> tuple[LevelResult, LevelResult, ModeRun | None]:
        tokens = LevelResult(label, "tokens", mode)
        transcripts = LevelResult(label, "transcripts", mode)
        try:
            reference = self.baseline_run(mode)
            self._step(f"{label} {mode}")
            run = self._transcribe(backend, tokenizer, mode)
        except Exception as exc:  # noqa: BLE001 - recorded as both levels' error
            tokens.error = transcripts.error = _one_line(exc)
            return tokens, transcripts, None
        tokens.seconds = transcripts.seconds = run.seconds / 2
        tokens.checks, tokens.details = _token_checks(reference, run, limits)
        transcripts.checks, transcripts.details = self._transcript_checks(mode, reference, run, limits)
        return tokens, transcripts, run

    def _check_words(
        self, label: str, mode: str, run: ModeRun | None, table: str, error: str | None
    ) -> LevelResult:
        """Same words as the baseline, and the share of their start/end times within tolerance."""
        result = LevelResult(label, WORDS_LEVEL, mode, error=error)
        if run is None:
            return result
        tolerance, limits = self.config.words(table)
        reference = self.baseline_run(mode)
        agreement = word_agreement(
            [_words(t) for t in reference.transcripts], [_words(t) for t in run.transcripts], tolerance
        )
        note = f"{agreement['words_matched']}/{agreement['words']} words equal"
        result.checks = [
            Check("word_match_min", agreement["match_rate"], limits.get("word_match_min"), note),
            Check(
                "word_time_share_min",
                agreement["time_share"],
                limits.get("word_time_share_min"),
                f"start and end within {tolerance:g} s; worst {agreement['time_max_abs']:.2f} s",
            ),
        ]
        result.details = {**agreement, "tolerance_s": tolerance}
        return result

    def _transcript_checks(
        self, mode: str, reference: ModeRun, run: ModeRun, limits: dict[str, float]
    ) -> tuple[list[Check], dict[str, Any]]:
        """WER against the baseline's transcript and the drift of matched segment times."""
        from dwkit.metrics import wer

        deviation = transcripts_deviation(reference.transcripts, run.transcripts)
        seg_note = f"{deviation['matched']} segments matched, {deviation['unmatched']} unmatched"
        spoken = self._spoken_wer(mode, reference, run)
        wer_note = (
            f"vs spoken text: baseline {spoken['baseline_wer_vs_spoken']:.1%}, "
            f"candidate {spoken['candidate_wer_vs_spoken']:.1%}"
            if spoken
            else ""
        )
        ref_text = " ".join(t.text for t in reference.transcripts)
        cand_text = " ".join(t.text for t in run.transcripts)
        checks = [
            Check("wer_max", wer(ref_text, cand_text), limits.get("wer_max"), wer_note),
            Check("timestamp_max_abs", deviation["max_abs"], limits.get("timestamp_max_abs"), seg_note),
            Check("timestamp_mean_abs", deviation["mean_abs"], limits.get("timestamp_mean_abs")),
        ]
        details = {
            "baseline_seconds": round(reference.seconds, 3),
            "candidate_seconds": round(run.seconds, 3),
            "segments_matched": deviation["matched"],
            "segments_unmatched": deviation["unmatched"],
            **spoken,
        }
        return checks, details

    def _spoken_wer(self, mode: str, reference: ModeRun, run: ModeRun) -> dict[str, float]:
        """Both sides' WER against the known spoken text (information, not gated)."""
        from dwkit.metrics import wer

        clips = self.audio.for_mode(mode)
        truncated = mode == "short" and any(clip.duration > 30 for clip in clips)
        if truncated or any(clip.spoken is None for clip in clips):
            return {}
        spoken = " ".join(clip.spoken or "" for clip in clips)
        return {
            "baseline_wer_vs_spoken": wer(spoken, " ".join(t.text for t in reference.transcripts)),
            "candidate_wer_vs_spoken": wer(spoken, " ".join(t.text for t in run.transcripts)),
        }


def _words(transcript: Any) -> list[Any]:
    return [w for s in transcript.segments for w in s.words or []]


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.split(". ")[0][:120] or type(exc).__name__


def _numerics(
    backend: Any, mels: list[np.ndarray], reference: list[tuple[np.ndarray, np.ndarray]], prompt: list[int]
) -> dict[str, tuple[float | None, str]]:
    """Metric -> (worst value over clips, or None with the backend's reason it cannot tell)."""
    from dwkit.compare import cosine

    enc_abs, enc_cos, log_abs, log_cos = [], [], [], []
    enc_na = log_na = ""
    for mel, (ref_states, ref_logits) in zip(mels, reference):
        enc = backend.encode(mel)
        try:
            states = np.asarray(backend.encoder_array(enc), dtype=np.float32)
            if states.shape != ref_states.shape:
                raise ModelError(f"encoder states of shape {states.shape}, baseline {ref_states.shape}")
            enc_abs.append(float(np.abs(states - ref_states).max()))
            enc_cos.append(cosine(states, ref_states))
        except NotImplementedError as exc:
            enc_na = _first_sentence(exc)
        try:
            logits = np.asarray(backend.next_token_logits(enc, [prompt]), dtype=np.float32)
            log_abs.append(float(np.abs(logits - ref_logits).max()))
            log_cos.append(cosine(logits, ref_logits))
        except NotImplementedError as exc:
            log_na = _first_sentence(exc)
    return {
        "encoder_max_abs": (max(enc_abs) if enc_abs else None, enc_na),
        "encoder_cosine_min": (min(enc_cos) if enc_cos else None, enc_na),
        "logits_max_abs": (max(log_abs) if log_abs else None, log_na),
        "logits_cosine_min": (min(log_cos) if log_cos else None, log_na),
    }


def _token_checks(
    reference: ModeRun, run: ModeRun, limits: dict[str, float]
) -> tuple[list[Check], dict[str, Any]]:
    """The token_match_min check (noting the first divergence) and the agreement it measured."""
    agreement = window_agreement(reference.windows, run.windows)
    note = f"{agreement['windows_equal']}/{agreement['windows']} windows equal"
    first = agreement["first_divergence"]
    if first is not None:
        note += f", first divergence: clip {first['clip']} window {first['window']} token {first['token']}"
    return [Check("token_match_min", agreement["match_rate"], limits.get("token_match_min"), note)], agreement
