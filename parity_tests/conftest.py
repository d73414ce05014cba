"""The parity gate as a pytest suite: point it at your checkpoint and your converted models.

    python -m pytest parity_tests \
        --dwkit-model path/to/hf-checkpoint \
        --dwkit-candidate ct2:out/ct2-int8 --dwkit-candidate onnx:out/onnx-fp32 \
        --dwkit-thresholds ci/parity.toml

or the same through the environment (handy in CI): DWKIT_PARITY_MODEL,
DWKIT_PARITY_CANDIDATES (comma-separated BACKEND:PATH[:PRECISION]), DWKIT_PARITY_THRESHOLDS,
DWKIT_PARITY_AUDIO (comma-separated files), DWKIT_PARITY_MODES (default
short,sequential,chunked), DWKIT_PARITY_DEVICE, DWKIT_PARITY_JSON. Command-line options win.

Every candidate x level x mode is one test, checked by the same code and thresholds file as
`dwkit parity`. With no candidates given, the suite builds its own: the model (default: the
bundled real tiny.en) converted to every format whose backend runs on this machine, and
skips the others with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Before torch is imported: OpenMP's default spin-waiting slows inference badly on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ENV = {
    "model": "DWKIT_PARITY_MODEL",
    "candidates": "DWKIT_PARITY_CANDIDATES",
    "thresholds": "DWKIT_PARITY_THRESHOLDS",
    "audio": "DWKIT_PARITY_AUDIO",
    "modes": "DWKIT_PARITY_MODES",
    "device": "DWKIT_PARITY_DEVICE",
    "json": "DWKIT_PARITY_JSON",
}
AUTO = "auto"  # candidate keys "auto:FORMAT:PRECISION": built by the suite itself


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dwkit parity", "dwkit parity gate (parity_tests/)")
    group.addoption("--dwkit-model", help=f"transformers checkpoint, the baseline (env {ENV['model']})")
    group.addoption(
        "--dwkit-candidate",
        action="append",
        default=[],
        metavar="BACKEND:PATH[:PRECISION]",
        help=f"converted model to gate, repeatable (env {ENV['candidates']}, comma-separated)",
    )
    group.addoption(
        "--dwkit-thresholds", help=f"thresholds TOML overriding the defaults (env {ENV['thresholds']})"
    )
    group.addoption(
        "--dwkit-audio", action="append", default=[], help=f"audio file, repeatable (env {ENV['audio']})"
    )
    group.addoption("--dwkit-modes", help=f"comma-separated: short,sequential,chunked (env {ENV['modes']})")
    group.addoption("--dwkit-device", help=f"cpu, cuda, cuda:N (env {ENV['device']})")
    group.addoption("--dwkit-json", help=f"also write the gate's JSON report here (env {ENV['json']})")


@dataclass
class Settings:
    model: str | None
    candidates: list[str]
    thresholds: str | None
    audio: list[str]
    modes: tuple[str, ...]
    device: str
    json: str | None


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _settings(config: pytest.Config) -> Settings:
    from dwkit.parity import MODES

    def pick(option: str, key: str) -> Any:
        return config.getoption(option) or os.environ.get(ENV[key]) or None

    modes = tuple(_split(pick("--dwkit-modes", "modes"))) or MODES
    bad = [mode for mode in modes if mode not in MODES]
    if bad:
        raise pytest.UsageError(f"dwkit parity modes {bad}: choose from {', '.join(MODES)}")
    return Settings(
        model=pick("--dwkit-model", "model"),
        candidates=config.getoption("--dwkit-candidate") or _split(os.environ.get(ENV["candidates"])),
        thresholds=pick("--dwkit-thresholds", "thresholds"),
        audio=config.getoption("--dwkit-audio") or _split(os.environ.get(ENV["audio"])),
        modes=modes,
        device=pick("--dwkit-device", "device") or "cpu",
        json=pick("--dwkit-json", "json"),
    )


def _candidate_keys(settings: Settings) -> list[str]:
    if settings.candidates:
        return list(settings.candidates)
    from dwkit.parity import self_test_precisions

    return [f"{AUTO}:{fmt}:{precision}" for fmt, precision in self_test_precisions().items()]


def pytest_configure(config: pytest.Config) -> None:
    settings = _settings(config)
    if settings.candidates and not settings.model:
        raise pytest.UsageError(
            f"dwkit parity: candidates given but no baseline model (--dwkit-model or {ENV['model']})"
        )
    config.stash[_SETTINGS] = settings


_SETTINGS = pytest.StashKey[Settings]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "parity_case" not in metafunc.fixturenames:
        return
    from dwkit.parity import ParityConfig

    settings = metafunc.config.stash[_SETTINGS]
    config = ParityConfig.load(settings.thresholds)
    cases, ids = [], []
    for key in _candidate_keys(settings):
        cases.append((key, "numerics", None))
        ids.append(f"{key}-numerics")
        for mode in settings.modes:
            for level in config.mode_levels(mode):
                cases.append((key, level, mode))
                ids.append(f"{key}-{level}-{mode}")
    metafunc.parametrize("parity_case", cases, ids=ids)


@dataclass
class ParitySession:
    """The gate (its baseline computed once) and each candidate's report, made on first use."""

    settings: Settings
    gate: Any = None
    reports: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def model_dir(self) -> Path:
        from dwkit.converters.base import resolve_source

        if self.settings.model:
            return resolve_source(self.settings.model)
        from dwkit.bundled import bundled_model, bundled_source
        from dwkit.errors import ModelError

        try:
            bundled_source("tiny.en")
        except ModelError as exc:
            pytest.skip(f"no model configured and the bundled tiny.en is missing: {exc}")
        return bundled_model("tiny.en")

    def the_gate(self) -> Any:
        if self.gate is None:
            from dwkit.parity import AudioSet, ParityConfig, ParityGate

            config = ParityConfig.load(self.settings.thresholds)
            audio = AudioSet.from_files(self.settings.audio) if self.settings.audio else None
            self.gate = ParityGate(self.model_dir(), audio, self.settings.modes, config, self.settings.device)
        return self.gate

    def report(self, key: str) -> Any:
        """The candidate's report; skips (with the reason) when this machine cannot build/run it."""
        from dwkit.errors import BackendUnavailable, DwkitError
        from dwkit.parity import Candidate, converted_candidate

        if key in self.skipped:
            pytest.skip(self.skipped[key])
        if key in self.errors:
            pytest.fail(self.errors[key], pytrace=False)
        if key not in self.reports:
            gate = self.the_gate()
            try:
                if key.startswith(f"{AUTO}:"):
                    _, fmt, precision = key.split(":")
                    candidate = converted_candidate(gate.model_dir, fmt, precision)
                else:
                    candidate = Candidate.parse(key)
                self.reports[key] = gate.check(candidate)
            except BackendUnavailable as exc:
                self.skipped[key] = str(exc)
                pytest.skip(str(exc))
            except DwkitError as exc:  # a bad spec, a missing directory: every case of it fails
                self.errors[key] = f"{key}: {exc}"
                pytest.fail(self.errors[key], pytrace=False)
            except Exception as exc:  # a bug or a failed conversion: the first case shows the traceback
                self.errors[key] = f"{key}: {type(exc).__name__}: {exc}"
                raise
        return self.reports[key]


@pytest.fixture(scope="session")
def parity_session(request: pytest.FixtureRequest) -> ParitySession:
    session = ParitySession(request.config.stash[_SETTINGS])
    yield session
    if session.settings.json and session.gate is not None and session.reports:
        from dwkit.parity import ParityReport

        gate = session.gate
        report = ParityReport(
            model=str(gate.model_dir),
            modes=gate.modes,
            audio=gate.audio,
            config_sources=gate.config.sources,
            baseline=gate.baseline_summary(),
            candidates=list(session.reports.values()),
        )
        Path(session.settings.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
