"""Word timestamps on onnx: the alignment graph (`decoder_align.onnx`, exported only when asked)
gives the cross-attention weights and logits transformers' eager attention gives, on a seeded
random model and on the real tiny.en; an export without it says how to get one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from dwkit.cli.dwconvert import entry as dwconvert  # noqa: E402
from dwkit.decoding.options import DecodeOptions  # noqa: E402
from dwkit.errors import ModelError  # noqa: E402
from dwkit.manifest import read_manifest  # noqa: E402
from dwkit.onnx_graphs import CROSS_ATTENTIONS, DECODER_ALIGN, GRAPHS, graph_file  # noqa: E402
from dwkit.runtimes import load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from tests.converters.test_onnx import converted  # noqa: E402

# Softmax weights are in [0, 1]; fp32 onnxruntime vs fp32 torch differ by float rounding only.
WEIGHTS_ATOL = 1e-4
LOGITS_ATOL = 1e-3
RUNTIME = RuntimeConfig(threads=2)


def _hf_model(model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(
        model_dir, dtype="float32", attn_implementation="eager"
    ).eval()


def _hf_decoder_pass(model, states: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """transformers' logits and cross-attentions [batch, layers, heads, tokens, frames]."""
    import torch

    with torch.no_grad():
        out = model.model.decoder(
            input_ids=torch.as_tensor(tokens),
            encoder_hidden_states=torch.as_tensor(states),
            output_attentions=True,
        )
        logits = model.proj_out(out.last_hidden_state)
    return logits.numpy(), torch.stack(out.cross_attentions, dim=1).numpy()


# -- the graph itself: the real tiny.en (cached export) and a seeded random model (slow) ---------


@pytest.fixture(scope="module")
def random_align_graph(random_tiny80_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dwkit.converters.onnx_export import export_graph, load_model

    path = tmp_path_factory.mktemp("align") / graph_file(DECODER_ALIGN)
    export_graph(load_model(random_tiny80_dir), DECODER_ALIGN, path, 18, None)
    return path


@pytest.fixture(params=["tiny.en", pytest.param("random", marks=pytest.mark.slow)])
def align_graph(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(the alignment graph, the checkpoint it was exported from)."""
    if request.param == "random":
        return request.getfixturevalue("random_align_graph"), request.getfixturevalue("random_tiny80_dir")
    return request.getfixturevalue("tiny_words_onnx") / graph_file(DECODER_ALIGN), request.getfixturevalue(
        "tiny_en_dir"
    )


def test_the_alignment_graph_gives_transformers_cross_attentions_at_any_batch_and_length(
    align_graph: tuple[Path, Path],
) -> None:
    import onnxruntime as ort

    from dwkit.onnx_check import inspect_graph

    graph, checkpoint = align_graph
    facts = inspect_graph(graph)
    assert "If" not in facts.op_types
    assert [v["name"] for v in facts.outputs] == ["logits", CROSS_ATTENTIONS]
    model = _hf_model(checkpoint)
    config = model.config
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, length in ((1, 1), (2, 7)):
        states = rng.standard_normal((batch, config.max_source_positions, config.d_model)).astype(np.float32)
        tokens = rng.integers(0, config.vocab_size, (batch, length), dtype=np.int64)
        logits, weights = session.run(None, {"input_ids": tokens, "encoder_hidden_states": states})
        ref_logits, ref_weights = _hf_decoder_pass(model, states, tokens)
        assert weights.shape == (
            batch,
            config.decoder_layers,
            config.decoder_attention_heads,
            length,
            config.max_source_positions,
        )
        assert np.abs(weights - ref_weights).max() < WEIGHTS_ATOL
        assert np.abs(logits - ref_logits).max() < LOGITS_ATOL
        assert np.allclose(weights.sum(-1), 1.0, atol=1e-4)  # softmax over the encoder frames


# -- the backend, on the real tiny.en -------------------------------------------------------------


def test_the_export_records_the_alignment_graph_and_keeps_the_decoding_graphs(
    tiny_words_onnx: Path, tiny_en_dir: Path, dwkit_cache: Path
) -> None:
    manifest = read_manifest(tiny_words_onnx)
    assert manifest["word_timestamps"] is True
    assert [g["name"] for g in manifest["graphs"]] == [*GRAPHS, DECODER_ALIGN]
    plain = converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)
    assert read_manifest(plain)["word_timestamps"] is False
    for graph in GRAPHS:  # decoding runs the very same graphs with or without word timestamps
        assert (tiny_words_onnx / graph_file(graph)).read_bytes() == (plain / graph_file(graph)).read_bytes()


def test_cross_attentions_match_transformers_on_real_speech(
    tiny_words_onnx: Path, tiny_en_dir: Path, speech_mel: np.ndarray
) -> None:
    import torch

    backend = load(tiny_words_onnx, config=RUNTIME)
    info = backend.info
    enc = backend.encode(np.concatenate([speech_mel, speech_mel * 0.5]))  # row 1 differs from row 0
    prompt = [info.sot, info.no_timestamps]
    text = backend.generate(enc, [prompt, prompt], DecodeOptions(max_new_tokens=24, without_timestamps=True))[
        1
    ]
    tokens = [*prompt, *[t for t in text.tokens if t < info.eot], info.eot]
    heads = [(int(layer), int(head)) for layer, head in info.alignment_heads]
    assert heads, "tiny.en's generation config carries alignment heads"
    weights, logits = backend.cross_attentions(enc, 1, tokens, heads)

    model = _hf_model(tiny_en_dir)
    with torch.no_grad():
        out = model(
            input_features=torch.as_tensor(speech_mel * 0.5),
            decoder_input_ids=torch.tensor([tokens]),
            output_attentions=True,
        )
    reference = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads]).numpy()
    assert weights.dtype == np.float32 and weights.shape == (len(heads), len(tokens), info.n_audio_ctx)
    assert logits.shape == (len(tokens), info.vocab_size)
    print(
        f"\ntiny.en onnx fp32 vs transformers eager: cross-attention {np.abs(weights - reference).max():.1e}"
    )
    assert np.abs(weights - reference).max() < WEIGHTS_ATOL
    assert np.abs(logits - out.logits[0].numpy()).max() < LOGITS_ATOL


def test_heads_outside_the_model_are_refused(tiny_words_onnx: Path, speech_mel: np.ndarray) -> None:
    backend = load(tiny_words_onnx, config=RUNTIME)
    enc = backend.encode(speech_mel)
    with pytest.raises(ModelError, match=r"alignment heads \[\(4, 0\)\] are outside .* 4 decoder layers"):
        backend.cross_attentions(enc, 0, [backend.info.sot, backend.info.eot], [(3, 0), (4, 0)])


def test_an_export_without_the_graph_names_the_fix(
    tiny_en_dir: Path, dwkit_cache: Path, speech_mel: np.ndarray
) -> None:
    backend = load(converted(tiny_en_dir, "fp32", dwkit_cache, validate=True), config=RUNTIME)
    enc = backend.encode(speech_mel)
    with pytest.raises(ModelError, match=r"decoder_align\.onnx.*dwconvert --to onnx --word-timestamps"):
        backend.cross_attentions(enc, 0, [backend.info.sot, backend.info.eot], [(3, 0)])


def test_dwconvert_takes_word_timestamps_for_graph_formats_only(
    tiny_en_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dwconvert([str(tiny_en_dir), str(tmp_path / "out"), "--to", "ct2", "--word-timestamps"]) == 1
    assert "--word-timestamps applies to --to onnx and trt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_converter_validates_the_alignment_graph_on_every_head(
    tiny_words_onnx: Path, tiny_en_dir: Path
) -> None:
    from dwkit.converters.onnx import alignment_validation

    backend = load(tiny_words_onnx, config=RUNTIME)
    found = alignment_validation(tiny_en_dir, backend, [843, 523, 616, 13])
    assert found["heads"] == backend.info.decoder_layers * backend.info.decoder_heads and found["tokens"] == 7
    assert found["cross_attention_max_abs"] < WEIGHTS_ATOL and found["logits_max_abs"] < LOGITS_ATOL


def test_dwkit_info_says_whether_a_model_gives_word_timestamps(
    tiny_words_onnx: Path, tiny_en_dir: Path, dwkit_cache: Path
) -> None:
    import re

    from dwkit.cli.info import describe, render

    assert re.search(r"word timestamps\s+yes\n", render(describe(tiny_words_onnx)))
    plain = render(describe(converted(tiny_en_dir, "fp32", dwkit_cache, validate=True)))
    assert re.search(r"word timestamps\s+no \(convert again with --word-timestamps\)", plain)
    assert "word timestamps" not in render(describe(tiny_en_dir))  # a checkpoint has no manifest
