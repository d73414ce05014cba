"""Each row against the transformers fp32 baseline of its mode: speed, encoder, decoder,
memory and size ratios, and WER against the spoken text and the baseline's transcript."""

from __future__ import annotations

from typing import Any

from dwkit.bench.config import DRAFT_SUFFIX

BASELINE_LABEL = "hf fp32"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """`vs_baseline` on every row: ratios to the dwkit hf fp32 row of the same mode."""
    baselines = {r["mode"]: r for r in rows if r["system"] == "dwkit" and r["label"] == BASELINE_LABEL}
    for row in rows:
        base = baselines.get(row["mode"])
        if base is None or "error" in base or "error" in row:
            row["vs_baseline"] = None
            continue
        row["vs_baseline"] = {
            "speedup": _ratio(row.get("rtfx"), base.get("rtfx")),
            "encoder_speedup": _ratio(base.get("encoder_ms_per_window"), row.get("encoder_ms_per_window")),
            "decoder_speedup": _ratio(base.get("decoder_ms_per_token"), row.get("decoder_ms_per_token")),
            "peak_rss": _ratio(row.get("peak_rss_mb"), base.get("peak_rss_mb")),
            "size": _ratio(row.get("size_mb"), base.get("size_mb")),
        }
    _add_draft_ratios(rows)


def _add_draft_ratios(rows: list[dict[str, Any]]) -> None:
    """A `+draft` row against the same backend without the draft, same mode: its speedup, and
    whether the transcripts are the same (speculative decoding's defining property)."""
    plain = {(r["mode"], r["label"]): r for r in rows if "draft" not in r and "error" not in r}
    for row in rows:
        if "draft" not in row or "error" in row:
            continue
        without = plain.get((row["mode"], row["label"].removesuffix(" " + DRAFT_SUFFIX)))
        if without is not None:
            row["draft"]["speedup_vs_without"] = _ratio(row.get("rtfx"), without.get("rtfx"))
            row["draft"]["same_text_as_without"] = row.get("texts") == without.get("texts")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def add_wer(rows: list[dict[str, Any]], reference: str | None, meaningful: bool = True) -> None:
    """WER against the spoken text and the baseline's text (same mode); the texts are dropped.

    Random weights transcribe nothing (`meaningful=False`): their WER would only measure how
    differently two precisions pick among noise, so none is recorded.
    """
    from dwkit.metrics import wer

    texts = {id(row): " ".join(row.pop("texts")) for row in rows if "texts" in row}
    if not meaningful:
        return
    baselines = {
        r["mode"]: texts[id(r)]
        for r in rows
        if r["system"] == "dwkit" and r["label"] == BASELINE_LABEL and id(r) in texts
    }
    for row in rows:
        if id(row) not in texts:
            continue
        if reference is not None:
            row["wer"] = round(wer(reference, texts[id(row)]), 4)
        if row["mode"] in baselines:
            row["wer_vs_baseline"] = round(wer(baselines[row["mode"]], texts[id(row)]), 4)
