"""A gate's results in the three formats it writes: JSON, a plain-text table and JUnit XML.

JUnit XML is what CI systems (GitHub Actions, GitLab, Jenkins) show as test results, so each
candidate is a testsuite and each level x mode a testcase.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dwkit.parity.audio import Clip
    from dwkit.parity.results import CandidateReport, Check, LevelResult, ParityReport


# --- JSON --------------------------------------------------------------------------------


def as_json(report: ParityReport) -> dict[str, Any]:
    from dwkit import __version__

    return {
        "dwkit_version": __version__,
        "passed": report.passed,
        "failures": report.failures(),
        "model": report.model,
        "baseline": report.baseline,
        "modes": list(report.modes),
        "audio": {
            "short": [_clip_json(c) for c in report.audio.short],
            "long": [_clip_json(c) for c in report.audio.long],
        },
        "thresholds_files": report.config_sources,
        "candidates": [_candidate_json(candidate) for candidate in report.candidates],
    }


def _candidate_json(candidate: CandidateReport) -> dict[str, Any]:
    return {
        "spec": candidate.candidate.spec,
        "label": candidate.label,
        "backend": candidate.candidate.backend,
        "path": str(candidate.candidate.path),
        "precision": candidate.precision,
        "thresholds_table": candidate.table,
        "thresholds": candidate.limits,
        "load_seconds": round(candidate.load_seconds, 3),
        "passed": candidate.passed,
        "transcripts": candidate.transcripts,
        "results": [_level_json(result) for result in candidate.results],
    }


def _level_json(result: LevelResult) -> dict[str, Any]:
    return {
        "candidate": result.candidate,
        "level": result.level,
        "mode": result.mode,
        "passed": result.passed,
        "error": result.error,
        "seconds": round(result.seconds, 3),
        "checks": [_check_json(check) for check in result.checks],
        "details": result.details,
    }


def _check_json(check: Check) -> dict[str, Any]:
    return {
        "metric": check.metric,
        "value": _json_number(check.value),
        "limit": check.limit,
        "bound": check.bound,
        "passed": check.passed,
        "note": check.note,
    }


def _clip_json(clip: Clip) -> dict[str, Any]:
    return {"name": clip.name, "duration_s": round(clip.duration, 3), "spoken": clip.spoken}


def _json_number(value: float | None) -> float | str | None:
    """inf and nan as strings: JSON has no such numbers."""
    if value is None:
        return None
    return value if math.isfinite(value) else str(value)


# --- table -------------------------------------------------------------------------------


def as_table(report: ParityReport) -> str:
    rows = [("candidate", "level", "mode", "result", "measured")]
    for result in report.results:
        status = "ERROR" if result.error else ("PASS" if result.passed else "FAIL")
        rows.append((result.candidate, result.level, result.mode or "-", status, result.summary()))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * 8)
    return "\n".join(lines)


# --- JUnit XML ---------------------------------------------------------------------------


def as_junit_xml(report: ParityReport) -> str:
    suites = ET.Element("testsuites", name="dwkit parity")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for candidate in report.candidates:
        counts = _junit_suite(suites, candidate)
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _junit_suite(suites: ET.Element, candidate: CandidateReport) -> dict[str, int]:
    """Add one candidate's testsuite; its counts of tests, failures and errors."""
    counts = {
        "tests": len(candidate.results),
        "failures": sum(1 for r in candidate.results if r.error is None and not r.passed),
        "errors": sum(1 for r in candidate.results if r.error is not None),
    }
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"parity {candidate.label}",
        time=f"{sum(r.seconds for r in candidate.results):.3f}",
        **{k: str(v) for k, v in counts.items()},
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="spec", value=candidate.candidate.spec)
    for result in candidate.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"parity.{candidate.label}",
            name=result.name,
            time=f"{result.seconds:.3f}",
        )
        if result.error is not None:
            ET.SubElement(case, "error", message=result.error, type="error").text = result.error
        elif not result.passed:
            lines = result.failures()
            ET.SubElement(case, "failure", message="; ".join(lines), type="threshold").text = "\n".join(lines)
        ET.SubElement(case, "system-out").text = result.summary()
    return counts
