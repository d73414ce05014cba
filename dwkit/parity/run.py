"""`run_parity`: the driver behind `dwkit parity` and parity_tests: check every candidate
spec, then gate each against one baseline, with a progress bar on stderr."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dwkit.errors import ConfigError
from dwkit.parity.audio import AudioSet
from dwkit.parity.candidates import Candidate, check_available
from dwkit.parity.config import MODES, ParityConfig
from dwkit.parity.gate import ParityGate, ProgressFn
from dwkit.parity.results import ParityReport


def run_parity(
    model_dir: str | Path,
    candidates: Sequence[Candidate | str],
    audio: AudioSet | None = None,
    modes: Sequence[str] = MODES,
    config: ParityConfig | None = None,
    device: str = "cpu",
    threads: int = 0,
    progress: bool = False,
) -> ParityReport:
    """Gate every candidate against the transformers baseline on `model_dir`.

    Candidate specs are all checked (syntax, directory, backend, precision, thresholds) before
    anything runs, so a typo costs a second, not a baseline run.
    """
    parsed = [c if isinstance(c, Candidate) else Candidate.parse(c) for c in candidates]
    if not parsed:
        raise ConfigError("no candidates: give at least one BACKEND:PATH[:PRECISION]")
    config = config or ParityConfig.load()
    for candidate in parsed:
        config.thresholds(candidate.backend, candidate.resolve_precision())
        check_available(candidate.backend)
    bar = _progress_bar(1 + len(modes) + len(parsed) * (2 + len(modes))) if progress else None
    gate = ParityGate(model_dir, audio, modes, config, device, threads, _advance(bar) if bar else None)
    try:
        reports = [gate.check(candidate) for candidate in parsed]
    finally:
        if bar is not None:
            bar.close()
    return ParityReport(
        model=str(gate.model_dir),
        modes=gate.modes,
        audio=gate.audio,
        config_sources=config.sources,
        baseline=gate.baseline_summary(),
        candidates=reports,
    )


def _progress_bar(total: int):  # type: ignore[no-untyped-def]
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="parity", file=sys.stderr, leave=False, unit="step", dynamic_ncols=True)


def _advance(bar: Any) -> ProgressFn:
    """A progress callback: each new step completes the previous one on the bar."""
    started = [False]

    def step(description: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_description_str(f"parity: {description}")

    return step
