"""The output directory: records committed in shards, atomically, and the done-set read back.

Layout: `DIR/batch.json` (the shard formats this directory is written in, fixed on the first
run), `DIR/shards/part-<run>-<n>.<fmt>` (one file per format per shard) and, when asked,
`DIR/files/<input path relative to the input root, suffix replaced>.<srt|vtt|json|txt>`.

Why a killed run loses nothing and duplicates nothing: each shard file is written under a
temporary name and renamed into place, and the *commit* of a shard is the rename of its last
format (parquet when asked, else jsonl). A re-run first deletes temporary files and shard
files whose commit file is missing, then reads the done-set, (path, sha256) of every record,
from the committed shards only. Per-file outputs are written (atomically) before their
shard commits, so a record that is done always has its files.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwkit.cli.common import write_atomic
from dwkit.errors import ConfigError

META_NAME = "batch.json"
SHARDS = "shards"
FILES = "files"
COMMIT_ORDER = ("jsonl", "parquet")  # rename order: the last format present commits a shard
_TMP_PREFIX = ".tmp-"


class ShardStore:
    """Commits records to `DIR/shards` and knows which inputs are done."""

    def __init__(self, output: Path, formats: list[str]):
        self.output = Path(output)
        self.formats = [f for f in COMMIT_ORDER if f in formats]
        self.commit_format = self.formats[-1]
        self.shards = self.output / SHARDS
        self.run_id = uuid.uuid4().hex[:12]
        self._next = 0

    def open(self) -> None:
        """Create the directory (or check it was written in the same formats) and drop what a
        killed run left uncommitted."""
        try:
            self.shards.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--output {self.output}: cannot create it ({exc.strerror or exc})") from exc
        meta = self.output / META_NAME
        if meta.is_file():
            written = json.loads(meta.read_text()).get("shard_formats")
            if written != self.formats:
                raise ConfigError(
                    f"--output {self.output} holds {'+'.join(written or ['?'])} shards, but "
                    f"batch.shard_formats asks for {'+'.join(self.formats)}: set the same formats "
                    "to resume it, or choose a new --output"
                )
        else:
            write_atomic(meta, json.dumps({"shard_formats": self.formats}) + "\n")
        for path in self.shards.iterdir():
            if path.name.startswith(_TMP_PREFIX) or not self._committed(path):
                path.unlink(missing_ok=True)

    def done(self) -> set[tuple[str, str]]:
        """(path, sha256) of every record in a committed shard."""
        keys: set[tuple[str, str]] = set()
        for path in sorted(self.shards.glob(f"*.{self.commit_format}")):
            for record in read_shard(path, columns=["path", "sha256"]):
                keys.add((record["path"], record["sha256"]))
        return keys

    def records(self) -> list[dict[str, Any]]:
        """Every committed record (for tests and small corpora: reads every shard)."""
        return [r for path in sorted(self.shards.glob(f"*.{self.commit_format}")) for r in read_shard(path)]

    def commit(self, records: list[dict[str, Any]]) -> Path:
        """Write one shard in every format, committing it with the last rename."""
        stem = f"part-{self.run_id}-{self._next:05d}"
        self._next += 1
        final = self.shards / f"{stem}.{self.commit_format}"
        for fmt in self.formats:
            _write_renamed(self.shards / f"{stem}.{fmt}", WRITERS[fmt], records)
        return final

    def write_file_output(self, relative: str, fmt: str, text: str) -> None:
        write_atomic(self.output / FILES / Path(relative).with_suffix(f".{fmt}"), text)

    def _committed(self, path: Path) -> bool:
        return path.suffix == f".{self.commit_format}" or path.with_suffix(f".{self.commit_format}").exists()


def read_shard(path: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [_as_json_row(row) for row in pq.read_table(path, columns=columns).to_pylist()]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [{k: r[k] for k in columns} for r in rows] if columns else rows


def _as_json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as its JSON line reads: Arrow's fixed schema gives every segment a `words`
    column, null without word timestamps, where the JSON (Transcript.to_dict) has no key."""
    for segment in row.get("segments") or []:
        if segment.get("words", ()) is None:
            del segment["words"]
    return row


def _write_parquet(path: str, records: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dwkit.batch.records import arrow_schema

    pq.write_table(pa.Table.from_pylist(records, schema=arrow_schema()), path)


def _write_jsonl(path: str, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


WRITERS: dict[str, Callable[[str, list[dict[str, Any]]], None]] = {
    "parquet": _write_parquet,
    "jsonl": _write_jsonl,
}


def _write_renamed(path: Path, write: Callable[[str, list[dict[str, Any]]], None], records: list) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp, records)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
