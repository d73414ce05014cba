"""The progress bar of a batch job: files done, audio hours done and throughput, on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any

SECONDS_PER_HOUR = 3600.0


class BatchProgress:
    """A tqdm bar in files whose postfix carries the audio done and the speed (a no-op when off)."""

    def __init__(self, total_files: int, enabled: bool):
        self.files = 0
        self.audio_s = 0.0
        self.errors = 0
        self._start = time.monotonic()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_files, unit="file", desc="batch", file=sys.stderr, dynamic_ncols=True
            )

    def update(self, record: dict[str, Any]) -> None:
        self.files += 1
        self.audio_s += record.get("duration") or 0.0
        self.errors += record.get("error") is not None
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self._start, 1e-9)
        self._bar.set_postfix_str(
            f"{self.audio_s / SECONDS_PER_HOUR:.3f} h audio, {self.audio_s / elapsed:.1f}x real time, "
            f"{self.errors} errors",
            refresh=False,
        )
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
