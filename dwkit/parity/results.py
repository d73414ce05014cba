"""What the gate found: one Check per measured value, grouped per candidate x level x mode.

These types decide pass and fail and say why in one line; dwkit.parity.report turns them
into JSON, a table and JUnit XML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dwkit.parity.audio import AudioSet
from dwkit.parity.candidates import Candidate
from dwkit.parity.config import METRICS

_SLACK = 1e-9  # float noise allowed on either side of a limit (timestamps are multiples of 0.02)


@dataclass
class Check:
    """One measured value against its threshold (None limit: reported, not gated)."""

    metric: str
    value: float | None  # None: this backend cannot expose it ('n/a')
    limit: float | None
    note: str = ""

    @property
    def bound(self) -> str:
        return METRICS[self.metric][1]

    @property
    def passed(self) -> bool:
        if self.value is None or self.limit is None:
            return True
        if math.isnan(self.value):
            return False
        if self.bound == "max":
            return self.value <= self.limit + _SLACK
        return self.value >= self.limit - _SLACK

    def describe(self) -> str:
        """'wer_max: 0.0435 > 0.02 (over by 0.0235)' for a failure; the value otherwise."""
        if self.value is None:
            return f"{self.metric}: n/a" + (f" ({self.note})" if self.note else "")
        text = f"{self.metric}: {_fmt(self.value)}"
        if self.limit is not None:
            if self.passed:
                text += f" {'<=' if self.bound == 'max' else '>='} {_fmt(self.limit)}"
            else:
                by = self.value - self.limit if self.bound == "max" else self.limit - self.value
                side = "over" if self.bound == "max" else "under"
                op = ">" if self.bound == "max" else "<"
                text += f" {op} {_fmt(self.limit)} ({side} by {_fmt(by)})"
        return text + (f" ({self.note})" if self.note else "")


@dataclass
class LevelResult:
    """One candidate x level x mode: the checks made and what was measured."""

    candidate: str
    level: str
    mode: str | None  # None: numerics, which do not depend on the mode
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.level if self.mode is None else f"{self.level}[{self.mode}]"

    @property
    def passed(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks)

    def failures(self) -> list[str]:
        """One line per failed threshold (or the error), naming candidate, level and mode."""
        where = f"{self.candidate} {self.level}" + (f" {self.mode}" if self.mode else "")
        if self.error is not None:
            return [f"FAIL {where}: error: {self.error}"]
        return [f"FAIL {where}: {check.describe()}" for check in self.checks if not check.passed]

    def summary(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        return "; ".join(check.describe() for check in self.checks)


@dataclass
class CandidateReport:
    candidate: Candidate
    label: str
    precision: str | None
    table: str | None  # the thresholds table used
    limits: dict[str, float]
    results: list[LevelResult]
    transcripts: dict[str, list[str]] = field(default_factory=dict)  # mode -> text per clip
    load_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


@dataclass
class ParityReport:
    model: str
    modes: tuple[str, ...]
    audio: AudioSet
    config_sources: list[str]
    baseline: dict[str, Any]
    candidates: list[CandidateReport]

    @property
    def results(self) -> list[LevelResult]:
        return [result for candidate in self.candidates for result in candidate.results]

    @property
    def passed(self) -> bool:
        return all(candidate.passed for candidate in self.candidates)

    def failures(self) -> list[str]:
        return [line for result in self.results for line in result.failures()]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (`dwkit parity --json`)."""
        from dwkit.parity.report import as_json

        return as_json(self)

    def table(self) -> str:
        """A plain-text table: one row per candidate x level x mode."""
        from dwkit.parity.report import as_table

        return as_table(self)

    def junit_xml(self) -> str:
        """JUnit XML: a testsuite per candidate, a testcase per level x mode."""
        from dwkit.parity.report import as_junit_xml

        return as_junit_xml(self)


def _fmt(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if value == 0:
        return "0"
    return f"{value:.6g}" if abs(value) >= 1e-2 else f"{value:.3g}"
