"""A corpus job: list and fingerprint the inputs, skip what is done, transcribe the rest on Ray
Data with one Transcriber per actor, and commit records in shards as they stream back.

The driver (this process) hashes the files and writes every shard and per-file output, so the
output directory needs to be reachable from the driver only; actors need the audio and the
model (a shared filesystem or a hub id on a cluster). Only records travel back to it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.batch.inputs import InputFile, fingerprint, list_inputs
from dwkit.batch.progress import BatchProgress
from dwkit.batch.records import record_transcript
from dwkit.batch.shards import ShardStore
from dwkit.batch.worker import TranscribeActor
from dwkit.config import BatchSection, Config
from dwkit.errors import ConfigError, DwkitError
from dwkit.writers import render

logger = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What one run did: `skipped` files were done by an earlier run (same path and content)."""

    files: int
    skipped: int
    transcribed: int = 0
    errors: int = 0
    audio_s: float = 0.0
    seconds: float = 0.0
    shards: list[Path] = field(default_factory=list)


def run_batch(
    config: Config,
    input_spec: str,
    output: str | Path,
    address: str | None = None,
    progress: bool = False,
) -> BatchSummary:
    """Transcribe the corpus `input_spec` names into `output` (see dwkit.batch.shards).

    Joins the Ray cluster at `address`, or starts a small local one (stopped at the end) when
    none is given and this process is not already connected to one.
    """
    start = time.monotonic()
    batch = config.batch
    model = _checked_model(config)
    files, root = list_inputs(input_spec)
    store = ShardStore(Path(output), batch.shard_formats)
    store.open()
    inputs = fingerprint(files, root)
    _check_file_outputs(inputs, batch.file_formats)
    done = store.done()
    todo = [f for f in inputs if (f.path, f.sha256) not in done]
    summary = BatchSummary(files=len(inputs), skipped=len(inputs) - len(todo))
    if todo:
        _run(config, model, todo, store, summary, address, progress)
    summary.seconds = time.monotonic() - start
    return summary


def _run(
    config: Config,
    model: str,
    todo: list[InputFile],
    store: ShardStore,
    summary: BatchSummary,
    address: str | None,
    progress: bool,
) -> None:
    ray = _import_ray()
    from ray.exceptions import RayError

    batch = config.batch
    started = connect_ray(ray, address, batch)
    bar = BatchProgress(len(todo), progress)
    relative = {f.path: f.relative for f in todo}
    pending: list[dict[str, Any]] = []
    try:
        for record in _records(ray, config, model, todo):
            for fmt in batch.file_formats if record["error"] is None else ():
                store.write_file_output(relative[record["path"]], fmt, render(record_transcript(record), fmt))
            pending.append(record)
            bar.update(record)
            if len(pending) >= batch.shard_files:
                summary.shards.append(store.commit(pending))
                pending = []
        if pending:
            summary.shards.append(store.commit(pending))
    except RayError as exc:
        raise DwkitError(f"dwkit batch: a Ray worker failed: {_last_line(exc)}") from exc
    finally:
        bar.close()
        summary.transcribed, summary.errors, summary.audio_s = bar.files, bar.errors, bar.audio_s
        if started:
            ray.shutdown()


def _records(ray: Any, config: Config, model: str, todo: list[InputFile]):  # type: ignore[no-untyped-def]
    """Records in the order actors finish them (Ray Data does not hold results back for order)."""
    batch = config.batch
    n_batches = math.ceil(len(todo) / batch.files_per_batch)
    data = ray.data.from_items([dataclasses.asdict(f) for f in todo], override_num_blocks=n_batches)
    remote: dict[str, Any] = {"num_cpus": batch.cpus_per_actor}
    if batch.gpus_per_actor:
        remote["num_gpus"] = batch.gpus_per_actor
    results = data.map_batches(
        TranscribeActor,
        fn_constructor_kwargs={
            "config": config.to_dict(),
            "model": model,
            "threads": max(1, round(batch.cpus_per_actor)),
        },
        batch_size=batch.files_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(batch.actors, n_batches)),
        **remote,
    )
    for block in results.iter_batches(batch_size=None, batch_format="numpy"):
        for text in block["record"]:
            yield json.loads(text)


def _checked_model(config: Config) -> str:
    """Check the config against the model here, before any actor starts; the model as actors
    should find it: an absolute local directory, else the hub id (each node resolves it)."""
    if not config.model:
        from dwkit.bundled import bundled_model

        config.model = str(bundled_model("tiny.en"))
    model_dir = config.resolve_model()
    config.check(model_dir)
    local = config.local_model_dir()
    return str(local.resolve()) if local is not None else str(config.model)


def _check_file_outputs(inputs: list[InputFile], formats: list[str]) -> None:
    """Two inputs whose per-file outputs would overwrite each other (a.wav, a.mp3) are refused."""
    if not formats:
        return
    seen: dict[str, str] = {}
    for item in inputs:
        target = str(Path(item.relative).with_suffix(""))
        if target in seen:
            raise ConfigError(
                f"{seen[target]} and {item.path} would write the same per-file outputs "
                f"({target}.{formats[0]}); rename one, or set batch.file_formats = [] and read the shards"
            )
        seen[target] = item.path


def _import_ray() -> Any:
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            f"dwkit batch needs Ray Data and pyarrow ({exc}): pip install 'dwkit[batch]'"
        ) from exc
    return ray


def connect_ray(ray: Any, address: str | None, batch: BatchSection) -> bool:
    """Join `address`, or start a local Ray sized by the config; False when already connected."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(
            address="local",
            num_cpus=math.ceil(batch.actors * batch.cpus_per_actor),
            object_store_memory=batch.object_store_mb << 20,
            include_dashboard=False,
            **quiet,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is the one bar
    for handler in logging.getLogger("ray.data").handlers:  # its INFO lines stay in its log file
        if type(handler).__name__ == "PlainRayHandler":
            handler.setLevel(logging.ERROR)
    return True


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
