"""Candidates parity_tests builds itself when none are configured: the model converted to
each format at its most faithful CPU precision, through the shared conversion cache."""

from __future__ import annotations

from pathlib import Path

from dwkit.parity.candidates import Candidate, check_available


def self_test_precisions() -> dict[str, str]:
    """Per format, the precision parity_tests converts to when it builds its own candidates:
    what each backend declares as its most faithful one (`parity_precision`)."""
    from dwkit.runtimes import declarations

    return {s.name: s.parity_precision for s in declarations().specs.values() if s.parity_precision}


def converted_candidate(
    model_dir: str | Path, fmt: str, precision: str, cache_dir: Path | None = None
) -> Candidate:
    """`model_dir` converted to `fmt` at `precision` (no validation: the gate is the check),
    cached while the source weights, dwkit and the converter are unchanged. Raises
    BackendUnavailable when this machine cannot convert to or run `fmt`."""
    from dwkit.conversion_cache import cached_conversion
    from dwkit.converters import FORMATS, convert, format_module

    check_available(fmt)
    format_module(fmt)  # a missing library fails here, before anything is converted
    opts = {"progress": False} if "progress" in FORMATS[fmt].options else {}

    def convert_into(out: Path) -> None:
        convert(model_dir, out, fmt, precision, validate=False, overwrite=True, **opts)

    out, _ = cached_conversion(Path(model_dir), fmt, precision, convert_into, cache_dir)
    return Candidate(fmt, out, precision, f"{fmt}:{out}:{precision}")
