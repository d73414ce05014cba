"""The batcher's own contract, on a recording stand-in for the Transcriber (no model needed)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")

from dwkit.longform.options import LongformOptions  # noqa: E402
from dwkit.results import Transcript  # noqa: E402
from dwkit.serve.batcher import Batcher, Job  # noqa: E402


class RecordingTranscriber:
    """Answers each audio with its first sample as text, and records every call; `gate`
    holds the first call until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[float], LongformOptions]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def transcribe_batch(self, audios, options=None, on_segment=None):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.gate.wait()
        ids = [float(a[0]) for a in audios]
        self.calls.append((ids, options))
        return [Transcript(text=str(i), language="en", duration=1.0, segments=[]) for i in ids]


def _job(i: int, options: LongformOptions) -> Job:
    return Job(samples=np.full(16, i, dtype=np.float32), options=options)


def test_jobs_are_grouped_by_options_and_answered_in_their_own_order():
    fake = RecordingTranscriber()
    batcher = Batcher(fake, max_batch_size=8, max_wait_s=0)  # type: ignore[arg-type]
    plain, translate = LongformOptions(), LongformOptions(task="translate")
    blocker = _job(0, plain)
    batcher.start()
    batcher.submit(blocker)
    fake.entered.wait()  # the worker is busy: what follows queues up and is taken together
    jobs = [_job(i, translate if i % 2 else plain) for i in range(1, 7)]
    for job in jobs:
        batcher.submit(job)
    cancelled = jobs[2]
    assert cancelled.future.cancel()
    fake.gate.set()
    answers = [job.future.result(timeout=60).text for job in jobs if job is not cancelled]
    batcher.stop()
    assert answers == ["1.0", "2.0", "4.0", "5.0", "6.0"]
    assert [(ids, o.task) for ids, o in fake.calls] == [
        ([0.0], "transcribe"),
        ([1.0, 5.0], "translate"),  # groups in the order their first job came; job 3 was
        ([2.0, 4.0, 6.0], "transcribe"),  # cancelled while queued, so it was never decoded
    ]


def test_a_failed_decode_fails_its_requests_and_the_worker_goes_on():
    class Failing(RecordingTranscriber):
        def transcribe_batch(self, audios, options=None, on_segment=None):  # type: ignore[no-untyped-def]
            if float(audios[0][0]) == 1:
                raise RuntimeError("backend exploded")
            return super().transcribe_batch(audios, options, on_segment)

    fake = Failing()
    fake.gate.set()
    batcher = Batcher(fake, max_batch_size=1, max_wait_s=0)  # type: ignore[arg-type]
    batcher.start()
    failed, fine = batcher.submit(_job(1, LongformOptions())), batcher.submit(_job(2, LongformOptions()))
    with pytest.raises(RuntimeError, match="backend exploded"):
        failed.result(timeout=60)
    assert fine.result(timeout=60).text == "2.0"
    batcher.stop()
