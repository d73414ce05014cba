"""One record per input file: what Parquet and JSONL shards hold, and how a Transcript maps to it.

A record is the Transcript's own fields (text, language, duration, segments, mode, backend)
plus what a corpus job needs: the file's path and content hash (its key), the digest of the
model that made it, and the error that stopped it, if any (then the transcript fields are
null and segments empty).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dwkit.results import Segment, Transcript, Word

# Column order of the shards; `ARROW_SCHEMA` gives their types.
FIELDS = (
    "path",
    "sha256",
    "text",
    "language",
    "duration",
    "segments",
    "mode",
    "backend",
    "model_digest",
    "error",
)


def transcript_record(path: str, sha256: str, transcript: Transcript, model_digest: str) -> dict[str, Any]:
    data = transcript.to_dict()
    data.pop("source", None)  # the record's path is its source
    return {"path": path, "sha256": sha256, **data, "model_digest": model_digest, "error": None}


def error_record(
    path: str, sha256: str, error: str, backend: str | None, mode: str, model_digest: str
) -> dict[str, Any]:
    return {
        "path": path,
        "sha256": sha256,
        "text": None,
        "language": None,
        "duration": None,
        "segments": [],
        "mode": mode,
        "backend": backend,
        "model_digest": model_digest,
        "error": error,
    }


def record_transcript(record: dict[str, Any]) -> Transcript:
    """The Transcript a (successful) record holds, for the per-file writers."""
    segments = [_segment(segment) for segment in record["segments"]]
    keys = {f.name for f in dataclasses.fields(Transcript)} - {"segments", "source"}
    return Transcript(**{k: record[k] for k in keys}, segments=segments, source=record["path"])


def _segment(row: dict[str, Any]) -> Segment:
    """A Segment from its record row; its words (Arrow structs, or null) back to Words."""
    words = row.get("words")
    return Segment(**{**row, "words": None if words is None else [Word(**w) for w in words]})


def arrow_schema() -> Any:
    """The shards' Arrow schema, from the dataclasses (pyarrow is imported only when asked:
    the batch extra). Declared, not inferred, so a shard of error rows has the same types."""
    import pyarrow as pa

    segment = pa.struct([(f.name, _arrow_type(f.type)) for f in dataclasses.fields(Segment)])
    types = {
        "duration": pa.float64(),
        "segments": pa.list_(segment),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in FIELDS])


def _arrow_type(hint: str) -> Any:
    import pyarrow as pa

    # Segment's annotations are strings (from __future__ import annotations).
    base = hint.replace(" | None", "")
    if base == "list[Word]":
        return pa.list_(pa.struct([(f.name, _arrow_type(f.type)) for f in dataclasses.fields(Word)]))
    return {"float": pa.float64(), "str": pa.string(), "list[int]": pa.list_(pa.int64())}[base]
