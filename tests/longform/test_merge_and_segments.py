"""Window splitting, compression ratio and chunk merging equal transformers' own helpers."""

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperTokenizer
from transformers.models.whisper.tokenization_whisper import _decode_asr, _find_longest_common_sequence

from dwkit.longform.fallback import compression_ratio
from dwkit.longform.merge import ChunkOutput, longest_common_sequence, merge_aligned, merge_chunks
from dwkit.longform.segments import split_window
from dwkit.tokenizer import Tokenizer

TS = 50364  # base's first timestamp token


def test_split_on_pairs_seeks_to_last_complete_timestamp():
    tokens = [TS, 10, 11, TS + 100, TS + 100, 12, 13, TS + 250, TS + 250, 14, 15]
    segments, advance = split_window(tokens, TS, time_offset=5.0, window_frames=3000)
    assert [(s.start, s.end) for s in segments] == [(5.0, 7.0), (7.0, 10.0)]
    assert segments[1].tokens == [TS + 100, 12, 13, TS + 250, TS + 250]
    assert advance == 250 * 2  # frames: each timestamp step is 2 mel frames


def test_single_timestamp_ending_consumes_the_window():
    tokens = [TS, 10, TS + 100, TS + 100, 12, TS + 300]
    segments, advance = split_window(tokens, TS, 0.0, 2800)
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0), (2.0, 6.0)]
    assert advance == 2800


def test_no_pair_is_one_segment_to_the_last_timestamp():
    segments, advance = split_window([TS, 10, 11, TS + 40], TS, 1.0, 3000)
    assert len(segments) == 1 and segments[0].end == pytest.approx(1.8)
    segments, _ = split_window([10, 11], TS, 0.0, 1000)
    assert segments[0].end == pytest.approx(10.0)


@pytest.mark.parametrize("seed", range(3))
def test_compression_ratio_matches_transformers(seed):
    tokens = list(np.random.default_rng(seed).integers(0, 300, size=120)) * 2
    expected = WhisperForConditionalGeneration._retrieve_compression_ratio(torch.tensor(tokens), 51865)
    assert compression_ratio([int(t) for t in tokens], 51865) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_longest_common_sequence_matches_transformers(seed):
    rng = np.random.default_rng(seed)
    text = list(rng.integers(100, 120, size=60))
    runs = [text[0:25], text[18:45], text[40:60]]
    assert longest_common_sequence(runs) == _find_longest_common_sequence([list(r) for r in runs])


@pytest.mark.parametrize("timestamps", [False, True])
def test_merge_matches_the_pipeline_decoder(base_dir, timestamps):
    ours = Tokenizer.from_model_dir(base_dir)
    theirs = WhisperTokenizer.from_pretrained(base_dir)
    ts = ours.info.timestamp_begin
    words = ours.encode(" one two three four five six seven eight nine ten eleven twelve thirteen fourteen")
    en = ours.info.lang_to_id["<|en|>"]

    def chunk(piece, start, end):
        body = [ts + start] + piece + [ts + end] if timestamps else piece
        return [en] + body

    outputs = [
        ChunkOutput(chunk(words[:9], 0, 900), 20.0, 0.0, 3.0),
        ChunkOutput(chunk(words[6:], 0, 850), 18.0, 3.0, 0.0),
    ]
    model_outputs = [
        {"tokens": torch.tensor([o.tokens]), "stride": (o.length_s, o.stride_left_s, o.stride_right_s)}
        for o in outputs
    ]
    text, optional = _decode_asr(
        theirs, model_outputs, return_timestamps=timestamps, return_language=True, time_precision=0.02
    )
    pieces = merge_chunks(outputs, ours, timestamps)
    assert "".join(p.text for p in pieces) == text
    assert [p.language for p in pieces] == [c["language"] for c in optional["chunks"]]
    if timestamps:
        assert [(p.start, p.end) for p in pieces] == [tuple(c["timestamp"]) for c in optional["chunks"]]


@pytest.fixture(scope="module")
def tokenizers(base_dir):  # type: ignore[no-untyped-def]
    return Tokenizer.from_model_dir(base_dir), WhisperTokenizer.from_pretrained(base_dir)


@pytest.mark.parametrize("seed", range(8))
def test_the_guards_merge_has_the_no_timestamp_pipelines_text_and_ordered_times(tokenizers, seed):
    """merge_aligned joins chunks on their whole text: transformers' merge of the same chunks
    without their timestamps gives the same text, wherever the timestamps fall."""
    ours, theirs = tokenizers
    ts, en = ours.info.timestamp_begin, ours.info.lang_to_id["<|en|>"]
    words = ours.encode(" one two three four five six seven eight nine ten eleven twelve thirteen fourteen")
    rng = np.random.default_rng(seed)

    def chunk(piece):  # two segments at random places, times rising inside the chunk's 20 s
        cuts = sorted(rng.choice(np.arange(1, len(piece)), size=2, replace=False))
        times = sorted(rng.choice(np.arange(10, 900, 10), size=3, replace=False))
        body = [ts] + piece[: cuts[0]] + [ts + times[0]] * 2 + piece[cuts[0] : cuts[1]]
        return [en] + body + [ts + times[1]] * 2 + piece[cuts[1] :] + [ts + times[2]]

    end = int(rng.integers(8, 12))
    outputs = [
        ChunkOutput(chunk(words[:end]), 20.0, 0.0, 3.0),
        ChunkOutput(chunk(words[int(rng.integers(5, end - 2)) :]), 20.0, 3.0, 0.0),
    ]
    plain = [  # the same chunks decoded without timestamps
        {
            "tokens": torch.tensor([[t for t in o.tokens if t < ts]]),
            "stride": (20.0, o.stride_left_s, o.stride_right_s),
        }
        for o in outputs
    ]
    text, _ = _decode_asr(theirs, plain, return_timestamps=False, return_language=False, time_precision=0.02)
    pieces = merge_aligned(outputs, ours)
    assert "".join(p.text for p in pieces) == text
    times = [t for p in pieces for t in (p.start, p.end) if t is not None]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= 34.0
