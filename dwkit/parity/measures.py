"""The measures of levels 2 and 3: how many decoded windows agree, and how far matched
segment times moved. Pure functions of token lists and segments, so they are tested alone."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

SIMILAR_SEGMENT = 0.6  # difflib ratio above which two differing segment texts count as the same segment


def window_agreement(
    reference: Sequence[Sequence[list[int]]], candidate: Sequence[Sequence[list[int]]]
) -> dict[str, Any]:
    """Exact-match rate of decoded windows (per clip, in decode order) and the first divergence.

    A window one side decoded and the other did not counts as a mismatch.
    """
    from dwkit.compare import first_divergence

    total = matched = 0
    first: dict[str, int] | None = None
    for clip, (ref, cand) in enumerate(zip(reference, candidate)):
        for window in range(max(len(ref), len(cand))):
            total += 1
            a = list(ref[window]) if window < len(ref) else []
            b = list(cand[window]) if window < len(cand) else []
            if window < len(ref) and window < len(cand) and a == b:
                matched += 1
            elif first is None:
                first = {"clip": clip, "window": window, "token": first_divergence(a, b) or 0}
    return {
        "windows": total,
        "windows_equal": matched,
        "match_rate": matched / total if total else 1.0,
        "first_divergence": first,
    }


def timestamp_deviation(reference: Sequence[Any], candidate: Sequence[Any]) -> dict[str, Any]:
    """Abs differences of start and end times of matched segments.

    Segments are matched in order on their normalised text (difflib); where a run of segments
    differs in text but not in number, they are paired one to one if their texts are similar. Segments left unmatched are
    counted, not measured. No match at all while both sides have segments gives inf.
    """
    from dwkit.metrics import normalize

    a = [normalize(s.text) for s in reference]
    b = [normalize(s.text) for s in candidate]
    pairs: list[tuple[int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs.extend(zip(range(i1, i2), range(j1, j2)))
        elif tag == "replace" and i2 - i1 == j2 - j1:  # same count, some words differ
            pairs.extend(
                (i, j)
                for i, j in zip(range(i1, i2), range(j1, j2))
                if difflib.SequenceMatcher(None, a[i], b[j]).ratio() >= SIMILAR_SEGMENT
            )
    diffs = [
        d
        for i, j in pairs
        for d in (abs(reference[i].start - candidate[j].start), abs(reference[i].end - candidate[j].end))
    ]
    if diffs:
        worst, mean = max(diffs), sum(diffs) / len(diffs)
    else:
        worst = mean = math.inf if (reference or candidate) else 0.0
    return {
        "max_abs": worst,
        "mean_abs": mean,
        "matched": len(pairs),
        "unmatched": len(reference) + len(candidate) - 2 * len(pairs),
        "diffs": diffs,
    }


def transcripts_deviation(reference: Sequence[Any], candidate: Sequence[Any]) -> dict[str, Any]:
    """`timestamp_deviation` over clips (Transcripts, paired in order): the worst and mean
    difference over every matched segment; inf when some clip had no segment in common."""
    diffs: list[float] = []
    matched = unmatched = 0
    no_match = False
    for ref, cand in zip(reference, candidate):
        clip = timestamp_deviation(ref.segments, cand.segments)
        diffs += clip["diffs"]
        matched += clip["matched"]
        unmatched += clip["unmatched"]
        no_match = no_match or math.isinf(clip["max_abs"])
    return {
        "max_abs": math.inf if no_match else (max(diffs) if diffs else 0.0),
        "mean_abs": math.inf if no_match else (sum(diffs) / len(diffs) if diffs else 0.0),
        "matched": matched,
        "unmatched": unmatched,
    }


def word_agreement(
    reference: Sequence[Sequence[Any]], candidate: Sequence[Sequence[Any]], tolerance_s: float
) -> dict[str, Any]:
    """How the words of two sides agree, clip by clip (each a list of objects with
    `word`, `start`, `end`: dwkit.results.Word).

    Words are matched in order on their text (difflib, spaces stripped). `match_rate`: matched
    words over the longer side's count; `time_share`: matched words whose start and end are
    both within `tolerance_s` of the reference's (1.0 when nothing was matched on empty sides).
    """
    total = matched = within = 0
    diffs: list[float] = []
    for ref, cand in zip(reference, candidate):
        a = [w.word.strip() for w in ref]
        b = [w.word.strip() for w in cand]
        total += max(len(a), len(b))
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if tag != "equal":
                continue
            for i, j in zip(range(i1, i2), range(j1, j2)):
                pair = (abs(ref[i].start - cand[j].start), abs(ref[i].end - cand[j].end))
                matched += 1
                within += max(pair) <= tolerance_s + 1e-9
                diffs.extend(pair)
    return {
        "words": total,
        "words_matched": matched,
        "match_rate": matched / total if total else 1.0,
        "time_share": within / matched if matched else (1.0 if not total else 0.0),
        "time_max_abs": max(diffs) if diffs else 0.0,
        "time_mean_abs": sum(diffs) / len(diffs) if diffs else 0.0,
    }
