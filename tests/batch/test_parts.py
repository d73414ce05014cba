"""The parts of `dwkit batch` that need no Ray: inputs, shards and crash recovery, the [batch]
config table and the command line's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dwkit.batch.inputs import fingerprint, list_inputs
from dwkit.batch.records import error_record, record_transcript, transcript_record
from dwkit.batch.shards import ShardStore, read_shard
from dwkit.cli.main import entry
from dwkit.config import Config
from dwkit.errors import ConfigError
from dwkit.results import Segment, Transcript, Word


def _tree(root: Path) -> Path:
    for name in ("a.wav", "b.flac", "sub/c.mp3", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    return root


def test_a_directory_is_walked_for_audio_files(tmp_path: Path) -> None:
    files, root = list_inputs(str(_tree(tmp_path)))
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.wav", "b.flac", "sub/c.mp3"]
    assert root == tmp_path.resolve()


def test_a_glob_takes_what_it_matches_relative_to_its_fixed_part(tmp_path: Path) -> None:
    files, root = list_inputs(str(_tree(tmp_path) / "**" / "*.mp3"))
    assert files == [tmp_path / "sub" / "c.mp3"] and root == tmp_path
    assert fingerprint(files, root)[0].relative == "sub/c.mp3"


def test_a_manifest_lists_paths_relative_to_its_folder(tmp_path: Path) -> None:
    _tree(tmp_path)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# corpus\nsub/c.mp3\n\n{tmp_path / 'a.wav'}\nmissing.wav\n")
    files, _ = list_inputs(str(manifest))
    assert files == [tmp_path / "a.wav", tmp_path / "missing.wav", tmp_path / "sub" / "c.mp3"]
    hashed = {Path(f.path).name: f.sha256 for f in fingerprint(files, tmp_path)}
    assert hashed["missing.wav"] == ""  # fails later, in its actor, as an error row
    assert len(hashed["a.wav"]) == 64 and hashed["a.wav"] != hashed["c.mp3"]


@pytest.mark.parametrize("spec", ["nowhere", "nowhere/*.wav", "empty_dir"])
def test_an_input_that_names_no_audio_is_refused(tmp_path: Path, spec: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ConfigError, match="--input"):
        list_inputs(str(tmp_path / spec))


def _record(path: str, sha: str = "ab") -> dict:
    return error_record(path, sha, "unreadable", "hf", "sequential", "d" * 64)


def test_shards_round_trip_in_both_formats_and_give_the_done_set(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    store = ShardStore(tmp_path, ["parquet", "jsonl"])
    store.open()
    committed = store.commit([_record("/a.wav"), _record("/b.wav", "cd")])
    assert committed.suffix == ".parquet"
    assert read_shard(committed) == read_shard(committed.with_suffix(".jsonl"))
    assert read_shard(committed)[0]["segments"] == [] and read_shard(committed)[0]["text"] is None
    assert ShardStore(tmp_path, ["jsonl", "parquet"]).done() == {("/a.wav", "ab"), ("/b.wav", "cd")}


def test_word_timestamps_survive_both_shard_formats(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    words = [Word(0.0, 0.4, " Hello", 0.9), Word(0.4, 0.9, " world.", 0.8)]
    transcript = Transcript(
        " Hello world. Bye.",
        "en",
        2.0,
        [Segment(0.0, 0.9, " Hello world.", [1, 2], words=words), Segment(1.0, 2.0, " Bye.")],
    )
    store = ShardStore(tmp_path, ["parquet", "jsonl"])
    store.open()
    committed = store.commit([transcript_record("/a.wav", "ab", transcript, "d" * 64)])
    for shard in (committed, committed.with_suffix(".jsonl")):
        back = record_transcript(read_shard(shard)[0])
        assert back.segments[0].words == words and back.segments[1].words is None
        assert back.text == transcript.text


def test_what_a_killed_run_left_uncommitted_is_dropped(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    store = ShardStore(tmp_path, ["parquet", "jsonl"])
    store.open()
    store.commit([_record("/done.wav")])
    shards = tmp_path / "shards"
    # Killed between the two renames of a shard, and while writing another.
    (shards / "part-x-00000.jsonl").write_text('{"path": "/lost.wav", "sha256": "ab"}\n')
    (shards / ".tmp-part-x-00001.parquet.123").write_bytes(b"PAR1 half")
    resumed = ShardStore(tmp_path, ["parquet", "jsonl"])
    resumed.open()
    assert resumed.done() == {("/done.wav", "ab")}
    assert len(list(shards.iterdir())) == 2  # the committed shard's two files


def test_an_output_written_in_other_formats_is_refused(tmp_path: Path) -> None:
    ShardStore(tmp_path, ["jsonl"]).open()
    with pytest.raises(ConfigError, match="jsonl shards.*parquet"):
        ShardStore(tmp_path, ["parquet"]).open()


def test_the_batch_table_is_validated_like_the_others(tmp_path: Path) -> None:
    config = Config.from_dict(
        {"batch": {"actors": 2, "shard_formats": ["jsonl"]}}, env={"DWKIT_BATCH__GPUS_PER_ACTOR": "1"}
    )
    assert (config.batch.actors, config.batch.gpus_per_actor, config.batch.shard_formats) == (
        2,
        1.0,
        ["jsonl"],
    )
    with pytest.raises(ConfigError, match=r"batch.actors = 0: must be >= 1"):
        Config.from_dict({"batch": {"actors": 0}})
    with pytest.raises(ConfigError, match=r"batch.shard_formats = \"csv\": choose one of parquet, jsonl"):
        Config.from_dict({"batch": {"shard_formats": ["csv"]}})
    with pytest.raises(ConfigError, match="unknown key"):
        Config.from_dict({"batch": {"workers": 2}})


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = entry(["batch", "--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("dwkit: error: --input") and "Traceback" not in "\n".join(err)
