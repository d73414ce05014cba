"""Dynamic batching: requests that arrive together are decoded in one call of the batched engine.

One worker thread owns the model. It takes the first waiting request, waits up to
`max_wait_s` for more (up to `max_batch_size`), and decodes those that share the same
long-form options (language, task, temperatures) in one `transcribe_batch`, so every 30 s
window step encodes and decodes a window of each of them together. Results are matched to
requests by position in that call, so two requests' transcripts cannot be swapped.

A request is a `concurrent.futures.Future`: cancelling it before its batch starts (the
client left, or its time ran out) removes it from the batch; a running decode cannot be
interrupted, and its result is dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from dwkit.longform.options import LongformOptions
from dwkit.longform.sequential import SegmentFn
from dwkit.results import Transcript
from dwkit.transcriber import Transcriber


@dataclass(eq=False)
class Job:
    """One request's audio (16 kHz samples) and options, and where its transcript goes."""

    samples: np.ndarray
    options: LongformOptions
    on_segment: SegmentFn | None = None  # streaming requests (sequential mode)
    future: Future[Transcript] = field(default_factory=Future)


class Batcher:
    """The worker thread that decodes queued jobs in shared batches."""

    def __init__(
        self,
        transcriber: Transcriber,
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Jobs waiting for a batch (cancelled ones included until the worker skips them)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dwkit-serve-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress, then end the worker; jobs still queued are cancelled."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                job.future.cancel()

    def submit(self, job: Job) -> Future[Transcript]:
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._collect(first)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            for options, members in _groups(live):
                self._decode(options, members)
            if stopping:
                return

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """`first` and the jobs that arrive within max_wait_s of it, up to max_batch_size."""
        jobs = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _decode(self, options: LongformOptions, jobs: list[Job]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(jobs))
        callbacks = [job.on_segment for job in jobs]
        try:
            transcripts = self.transcriber.transcribe_batch(
                [job.samples for job in jobs],
                options=options,
                on_segment=callbacks if any(callbacks) else None,
            )
        except Exception as exc:  # a failed decode fails its requests, never the worker
            for job in jobs:
                job.future.set_exception(exc)
            return
        for job, transcript in zip(jobs, transcripts, strict=True):
            job.future.set_result(transcript)


def _groups(jobs: list[Job]) -> list[tuple[LongformOptions, list[Job]]]:
    """Jobs grouped by equal options, in arrival order (options are unhashable dataclasses)."""
    groups: list[tuple[LongformOptions, list[Job]]] = []
    for job in jobs:
        for options, members in groups:
            if options == job.options:
                members.append(job)
                break
        else:
            groups.append((job.options, [job]))
    return groups
