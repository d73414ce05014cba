"""The Ray actor: one Transcriber (one loaded model) that transcribes batches of files.

Ray Data calls it with a batch of rows (path, sha256, ...) and sends back one JSON record per
row. JSON, not Arrow columns, crosses the object store because Arrow infers each batch's
types, and a batch of only error rows (all-null text, empty segments) would not concatenate
with the others; the driver applies the one declared schema when it writes a shard.
"""

from __future__ import annotations

import json
from typing import Any

from dwkit.batch.records import error_record, transcript_record
from dwkit.errors import DwkitError


class TranscribeActor:
    """Built once per actor by Ray Data (`map_batches(TranscribeActor, concurrency=N)`)."""

    def __init__(self, config: dict[str, Any], model: str, threads: int):
        from dwkit.api import load
        from dwkit.config import Config

        data = {**config, "model": model}
        if not data.get("threads"):
            data["threads"] = threads  # the actor's CPU share, not every core of the node
        cfg = Config.from_dict(data, check=False)
        self.transcriber = load(cfg)
        self.mode = cfg.mode
        self.digest = model_digest(cfg.resolve_model())

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        paths = [str(p) for p in batch["path"]]
        hashes = [str(h) for h in batch["sha256"]]
        records = self.transcribe(paths, hashes)
        return {"record": [json.dumps(r, ensure_ascii=False) for r in records]}

    def transcribe(self, paths: list[str], hashes: list[str]) -> list[dict[str, Any]]:
        """One record per path, in order: the batch goes through the batched engine in one call;
        a file that fails is then isolated by running the others again one by one."""
        from dwkit.audio import check_audio

        errors: dict[int, str] = {}
        for i, path in enumerate(paths):
            try:
                check_audio(path)
            except DwkitError as exc:
                errors[i] = str(exc)
        good = [i for i in range(len(paths)) if i not in errors]
        transcripts = {}
        try:
            transcripts = dict(zip(good, self.transcriber.transcribe_batch([paths[i] for i in good])))
        except Exception:  # one file broke the batch (e.g. corrupt data past its first block)
            for i in good:
                try:
                    transcripts[i] = self.transcriber.transcribe(paths[i])
                except Exception as exc:  # a bad file is an error row; the job goes on
                    errors[i] = str(exc) if isinstance(exc, DwkitError) else f"{type(exc).__name__}: {exc}"
        backend = self.transcriber.backend.name
        return [
            error_record(paths[i], hashes[i], errors[i], backend, self.mode, self.digest)
            if i in errors
            else transcript_record(paths[i], hashes[i], transcripts[i], self.digest)
            for i in range(len(paths))
        ]


def model_digest(model_dir: Any) -> str:
    """The weights' checksum: the one the manifest recorded at conversion, else computed."""
    from dwkit.manifest import read_manifest, weights_checksum

    recorded = (read_manifest(model_dir) or {}).get("weights_checksum")
    return str(recorded) if recorded else weights_checksum(model_dir)
