"""`dwkit batch`: a corpus transcribed on Ray Data, one long-form engine per actor, resumable.

The pieces, each with one job: `inputs` lists the corpus and fingerprints its files,
`records` is the one record per file (and its Arrow schema), `shards` commits records to
the output directory atomically and reads back what is done, `worker` is the Ray actor that
holds one Transcriber, `progress` the bar, and `job` wires them on a Ray cluster (a local
one by default). Ray and pyarrow are the `batch` extra: `pip install 'dwkit[batch]'`.
"""

from __future__ import annotations

from dwkit.batch.job import BatchSummary, run_batch

__all__ = ["BatchSummary", "run_batch"]
