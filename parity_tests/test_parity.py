"""One test per candidate x level x mode: the candidate transcribes like transformers.

Cases come from conftest.py (your --dwkit-* options / DWKIT_PARITY_* variables, or models the
suite converts itself); thresholds from the same TOML file `dwkit parity` reads.
"""

from __future__ import annotations

import pytest


def test_parity(parity_case, parity_session):  # type: ignore[no-untyped-def]
    key, level, mode = parity_case
    report = parity_session.report(key)
    result = next(r for r in report.results if r.level == level and r.mode == mode)
    if not result.passed:
        pytest.fail("\n".join(result.failures()), pytrace=False)
