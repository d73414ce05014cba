"""The parity gate: does a converted model transcribe like transformers?

Every candidate (a backend + model directory + precision) is compared with the transformers
baseline (the hf backend, fp32, on the source checkpoint) on identical inputs, at three
levels (numerics, tokens, transcripts), the last two once per mode (short, sequential,
chunked). `dwkit parity` and the pytest suite in parity_tests/ both run `ParityGate`.

Read `gate` first (the levels, top to bottom), then:

- `config`: levels, modes, the baseline, the thresholds TOML (package defaults + a user file);
- `candidates`: `BACKEND:PATH[:PRECISION]` specs and their checks before anything runs;
- `audio`: the clips (given files, or the built-in speech);
- `measures`: window agreement and segment-time deviation, pure functions;
- `transcribe`: each side's transcription through the engine, every window's tokens kept;
- `results`: Check / LevelResult / CandidateReport / ParityReport and their verdicts;
- `report`: those results as JSON, a table and JUnit XML;
- `run`: `run_parity`, the driver with its progress bar;
- `conversions`: the candidates parity_tests converts itself.
"""

from dwkit.parity.audio import AudioSet, Clip
from dwkit.parity.candidates import Candidate
from dwkit.parity.config import (
    BASELINE_BACKEND,
    BASELINE_PRECISION,
    LEVELS,
    METRICS,
    MODES,
    PARITY_LONGFORM,
    ParityConfig,
)
from dwkit.parity.conversions import converted_candidate, self_test_precisions
from dwkit.parity.gate import ParityGate
from dwkit.parity.measures import timestamp_deviation, window_agreement
from dwkit.parity.results import CandidateReport, Check, LevelResult, ParityReport
from dwkit.parity.run import run_parity
from dwkit.parity.transcribe import ModeRun

__all__ = [
    "BASELINE_BACKEND",
    "BASELINE_PRECISION",
    "LEVELS",
    "METRICS",
    "MODES",
    "PARITY_LONGFORM",
    "AudioSet",
    "Candidate",
    "CandidateReport",
    "Check",
    "Clip",
    "LevelResult",
    "ModeRun",
    "ParityConfig",
    "ParityGate",
    "ParityReport",
    "converted_candidate",
    "self_test_precisions",
    "run_parity",
    "timestamp_deviation",
    "window_agreement",
]
