"""`dwkit batch` end to end on a local Ray with 2 actors and the real tiny.en.

One job over the corpus is shared by the asserts that read its output; the resume tests run
further (small) jobs on the same Ray session.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dwkit.batch import run_batch
from dwkit.batch.shards import ShardStore, read_shard
from dwkit.cli.main import main as dwkit_main
from dwkit.config import Config
from tests.batch.conftest import BAD_FILES, write_config

FORMATS = ["parquet", "jsonl"]
FILE_FORMATS = ["srt", "vtt", "json"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def first_run(local_ray, corpus: Path, tiny_en_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The corpus through `dwkit batch` once: (config path, output dir, summary, records)."""
    tmp = tmp_path_factory.mktemp("batch")
    config_path = write_config(
        tmp / "prod.toml", tiny_en_dir, shard_formats=FORMATS, file_formats=FILE_FORMATS
    )
    output = tmp / "out"
    summary = run_batch(Config.from_file(config_path, env={}), str(corpus), output)
    records = ShardStore(output, FORMATS).records()
    return config_path, output, summary, records


def _transcribe(config: Path, audio: Path, fmt: str, tmp: Path) -> str:
    out = tmp / f"{audio.stem}.{fmt}"
    assert dwkit_main(["transcribe", "--config", str(config), "-f", fmt, str(audio), "-o", str(out)]) == 0
    return out.read_text()


def test_one_record_per_file_in_both_formats(first_run, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    _, output, summary, records = first_run
    files = sorted(str(p) for p in corpus.rglob("*.wav"))
    assert sorted(r["path"] for r in records) == files  # each once, the subfolder's too
    assert summary.transcribed == len(files) and summary.skipped == 0
    assert summary.errors == len(BAD_FILES)
    shards = sorted((output / "shards").iterdir())
    assert {p.suffix for p in shards} == {".parquet", ".jsonl"}
    for parquet in (p for p in shards if p.suffix == ".parquet"):
        assert read_shard(parquet) == read_shard(parquet.with_suffix(".jsonl"))
    assert len(records[0]["model_digest"]) == 64


def test_bad_files_are_error_rows(first_run, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, records = first_run
    by_name = {Path(r["path"]).name: r for r in records}
    assert "empty" in by_name["empty.wav"]["error"]
    assert "not an audio file" in by_name["notes.wav"]["error"]
    for name in BAD_FILES:
        assert by_name[name]["text"] is None and by_name[name]["segments"] == []
    assert not list((first_run[1] / "files").glob("empty.*"))


@pytest.fixture(scope="module")
def reference(first_run, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """`dwkit transcribe --config ... -f json FILE` for each speech file, by path."""
    config, _, _, _ = first_run
    tmp = tmp_path_factory.mktemp("transcribe")
    out = {}
    for audio in sorted(corpus.rglob("speech*.wav")):
        out[str(audio)] = json.loads(_transcribe(config, audio, "json", tmp))
    return out


# Batching two files in one engine call changes how the backend's matmuls round, so a
# segment's average log-probability and no-speech probability can move in the 6th digit
# (the tokens, text and timestamps may not); with one file per call they are bit-identical.
_ROUNDING_FIELDS = ("avg_logprob", "no_speech_prob")


def assert_record_is(record: dict, expected: dict, exact: bool) -> None:
    """`record` holds the transcript `dwkit transcribe -f json` wrote as `expected`."""
    expected = copy.deepcopy(expected)
    assert expected.pop("source") == record["path"]
    got = copy.deepcopy({k: record[k] for k in expected})
    if not exact:
        for ours, theirs in zip(got["segments"], expected["segments"]):
            for key in _ROUNDING_FIELDS:
                assert ours.pop(key) == pytest.approx(theirs.pop(key), rel=1e-4, abs=1e-6)
    assert got == expected


def test_every_record_equals_dwkit_transcribe(first_run, reference, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    _, output, _, records = first_run
    good = [r for r in records if r["error"] is None]
    assert sorted(r["path"] for r in good) == sorted(reference)
    for record in good:
        assert record["backend"] == "hf" and record["text"].strip()
        assert_record_is(record, reference[record["path"]], exact=False)
        per_file = output / "files" / Path(record["path"]).relative_to(corpus).with_suffix(".json")
        assert_record_is(record, json.loads(per_file.read_text()), exact=True)


def test_per_file_subtitles_equal_dwkit_transcribe(first_run, corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, output, _, _ = first_run
    audio = corpus / "sub" / "speech3.wav"  # the subfolder is mirrored under files/
    for fmt in ("srt", "vtt"):
        assert (output / "files" / "sub" / f"speech3.{fmt}").read_text() == _transcribe(
            config, audio, fmt, tmp_path
        )


def test_rerun_skips_done_files_and_redoes_changed_ones(first_run, corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config_path, first_output, _, first_records = first_run
    output = tmp_path / "out"
    shutil.copytree(first_output, output)
    changed = tmp_path / "changed.wav"
    shutil.copy(corpus / "speech1.wav", changed)
    # As if an earlier run had transcribed another version of changed.wav: same path, old hash.
    stale = {**first_records[0], "path": str(changed), "sha256": "0" * 64}
    ShardStore(output, FORMATS).commit([stale])
    manifest = tmp_path / "corpus.txt"
    lines = ["# the corpus, then one file outside it"] + [str(p) for p in sorted(corpus.rglob("*.wav"))]
    manifest.write_text("\n".join([*lines, "changed.wav", ""]))  # relative to the manifest
    config = Config.from_file(config_path, env={})

    summary = run_batch(config, str(manifest), output)
    assert (summary.skipped, summary.transcribed, len(summary.shards)) == (6, 1, 1)
    again = run_batch(config, str(manifest), output)  # all done: no Ray job at all
    assert (again.skipped, again.transcribed, again.shards) == (7, 0, [])

    records = ShardStore(output, FORMATS).records()
    assert len(records) == len(first_records) + 2
    fresh = [r for r in records if r["path"] == str(changed) and r["sha256"] != stale["sha256"]]
    assert [r["sha256"] for r in fresh] == [_sha256(changed)]
    speech1 = next(r for r in first_records if r["path"].endswith("/speech1.wav"))
    assert fresh[0]["text"] == speech1["text"]
    assert (output / "files" / "changed.json").is_file()  # placed relative to the manifest's folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_for_shard(shards: Path, process: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while not list(shards.glob("*.parquet")):
        if process.poll() is not None:
            pytest.fail(f"dwkit batch exited ({process.returncode}) before its first shard")
        if time.monotonic() > deadline:
            pytest.fail("no shard landed in time")
        time.sleep(0.02)


@pytest.mark.slow  # a second Ray and model loads in a subprocess: over a minute on 2 busy cores
def test_killed_run_loses_nothing_and_duplicates_nothing(
    first_run, reference, corpus: Path, tiny_en_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, _, _, first_records = first_run
    config_path = write_config(tmp_path / "prod.toml", tiny_en_dir, files_per_batch=1, shard_files=1)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "dwkit.cli.main", "batch", "--config", str(config_path)]
    command += ["--input", str(corpus), "--output", str(output), "--no-progress"]
    # Its own session and process group: the kill takes the driver and the local Ray it started.
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stderr=subprocess.PIPE)
    try:
        _wait_for_shard(output / "shards", process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    store = ShardStore(output, ["parquet"])
    survived = store.records()
    assert 1 <= len(survived) < len(first_records)

    summary = run_batch(Config.from_file(config_path, env={}), str(corpus), output)
    assert summary.skipped == len(survived)
    assert summary.transcribed == len(first_records) - len(survived)
    records = store.records()
    assert sorted(r["path"] for r in records) == sorted(r["path"] for r in first_records)
    for record in records:  # one file per engine call here: bit-identical to dwkit transcribe
        if record["error"] is None:
            assert_record_is(record, reference[record["path"]], exact=True)
    assert not [p for p in (output / "shards").iterdir() if p.name.startswith(".")]
