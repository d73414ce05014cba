"""The graph-step decoding the onnx and trt backends share (`runtimes/graph_steps.py`), over a
numpy runner whose graphs make every row's history visible in its logits: prompt
de-duplication, the step loop, and beam reorders that gather the cross-attention cache only
when a row moves to another audio."""

from __future__ import annotations

from typing import Any

import numpy as np

from dwkit.runtimes.base import EncoderOutput
from dwkit.runtimes.graph_steps import GraphCache, GraphStepBackend


class NumpyRunner:
    """decoder_init/step whose logit 0 is the row's audio value plus the sum of its tokens."""

    def __init__(self) -> None:
        self.init_tokens: list[np.ndarray] = []
        self.gathered: list[int] = []  # how many tensors each gather moved
        self.contexts = 0

    def batch_size(self, value: Any) -> int:
        return int(value.shape[0])

    def gather(self, values: list[Any], index: np.ndarray) -> list[Any]:
        self.gathered.append(len(values))
        return [v[np.asarray(index)] for v in values]

    def decoder_init(self, tokens: np.ndarray, states: Any) -> tuple[np.ndarray, list[Any], list[Any]]:
        self.init_tokens.append(tokens.copy())
        history = np.cumsum(tokens, axis=1).astype(np.float64)
        logits = np.zeros((*tokens.shape, 3))
        logits[..., 0] = states[:, :1] + history
        return logits, [tokens[:, None, :, None].astype(np.float64)], [states[:, None, :, None]]

    def step_context(self, cross_kv: list[Any]) -> Any:
        self.contexts += 1
        return cross_kv[0]

    def decoder_step(
        self, tokens: np.ndarray, self_kv: list[Any], context: Any
    ) -> tuple[np.ndarray, list[Any]]:
        past = np.concatenate([self_kv[0], tokens[:, None, :, None].astype(np.float64)], axis=2)
        logits = np.zeros((tokens.shape[0], 1, 3))
        logits[:, 0, 0] = context[:, 0, 0, 0] + past.sum(axis=(1, 2, 3))
        return logits, [past]


class NumpyBackend(GraphStepBackend):
    name = "numpy"

    def __init__(self) -> None:
        self.runner = NumpyRunner()


AUDIO = EncoderOutput(data=np.array([[100.0], [200.0]]), batch_size=2)


def _prompted(backend: NumpyBackend, rows: list[int]) -> tuple[GraphCache, np.ndarray]:
    cache = backend.start(AUDIO, np.array(rows))
    return cache, backend.step(np.array([[1, 2]] * len(rows)), cache)


def test_each_distinct_audio_and_prompt_runs_decoder_init_once() -> None:
    backend = NumpyBackend()
    cache, logits = _prompted(backend, [0, 0, 0, 1])  # three beams of audio 0, one of audio 1
    (ran,) = backend.runner.init_tokens
    assert ran.shape == (2, 2)  # two distinct (audio, prompt) pairs, not four rows
    assert logits.shape == (4, 2, 3)
    assert list(logits[:, -1, 0]) == [103.0, 103.0, 103.0, 203.0]
    assert cache.encoder_states is None and len(cache.self_kv) == len(cache.cross_kv) == 1


def test_steps_extend_the_cache_and_several_tokens_go_one_at_a_time() -> None:
    backend = NumpyBackend()
    cache, _ = _prompted(backend, [0, 1])
    one = backend.step(np.array([[5], [7]]), cache)
    assert list(one[:, 0, 0]) == [108.0, 210.0]
    two = backend.step(np.array([[1, 1], [0, 2]]), cache)
    assert two.shape == (2, 2, 3)
    assert list(two[:, 1, 0]) == [110.0, 212.0]
    assert cache.self_kv[0].shape[2] == 5  # prompt 2 + 3 steps


def test_a_reorder_within_each_audio_gathers_only_the_self_attention_cache() -> None:
    backend = NumpyBackend()
    cache, _ = _prompted(backend, [0, 0, 1])
    backend.step(np.array([[1], [2], [3]]), cache)
    before = (list(backend.runner.gathered), backend.runner.contexts)
    backend.reorder(cache, np.array([1, 1, 2]))  # beam 1 of audio 0 takes both slots
    assert backend.runner.gathered == [*before[0], 1] and backend.runner.contexts == before[1]
    logits = backend.step(np.array([[0], [0], [0]]), cache)
    assert list(logits[:, 0, 0]) == [105.0, 105.0, 206.0]


def test_a_row_that_moves_to_another_audio_takes_that_audios_cross_cache() -> None:
    backend = NumpyBackend()
    cache, _ = _prompted(backend, [0, 1])
    contexts = backend.runner.contexts
    backend.reorder(cache, np.array([1, 1]))
    assert list(cache.rows) == [1, 1] and backend.runner.contexts == contexts + 1
    logits = backend.step(np.array([[0], [0]]), cache)
    assert list(logits[:, 0, 0]) == [203.0, 203.0]


def test_select_and_a_reorder_before_the_prompt_only_move_rows() -> None:
    backend = NumpyBackend()
    assert backend.select(AUDIO, [1]).data.tolist() == [[200.0]]
    cache = backend.start(AUDIO, np.array([0, 1]))
    backend.reorder(cache, np.array([1, 0]))
    assert list(cache.rows) == [1, 0] and backend.runner.gathered == [1]  # only select gathered
    logits = backend.step(np.array([[1, 2], [1, 2]]), cache)
    assert list(logits[:, -1, 0]) == [203.0, 103.0]


def test_graph_sizes_count_the_side_file_the_manifest_counted(tmp_path):
    """onnx's external data and OpenVINO's weights are part of a graph's recorded bytes."""
    from dwkit.runtimes.graph_steps import graph_file_problems

    (tmp_path / "encoder.onnx").write_bytes(b"g" * 10)
    (tmp_path / "encoder.onnx_data").write_bytes(b"w" * 90)
    graph = {"file": "encoder.onnx", "external_data": "encoder.onnx_data", "bytes": 100}
    assert graph_file_problems(tmp_path, {"graphs": [graph]}) == []
    (tmp_path / "encoder.onnx_data").write_bytes(b"w" * 50)
    assert graph_file_problems(tmp_path, {"graphs": [graph]}) == [
        "encoder.onnx: 60 bytes with its weights, but the manifest recorded 100 (truncated or replaced)"
    ]
    (tmp_path / "encoder.onnx_data").unlink()
    assert graph_file_problems(tmp_path, {"graphs": [graph]}) == [
        "encoder.onnx_data: missing (an incomplete copy or conversion?)"
    ]
    plain = {"file": "encoder.onnx", "bytes": 10}
    assert graph_file_problems(tmp_path, {"graphs": [plain]}) == []
