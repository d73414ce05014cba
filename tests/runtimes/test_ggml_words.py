"""Word timestamps on ggml come from whisper.cpp's own DTW (whisper_full forced to decode our
tokens, with our alignment heads): the path it gives has the shared DTW's shape and, on the
real tiny.en, the jump frames and token probabilities of the onnx fp32 backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pywhispercpp")
pytest.importorskip("gguf")
pytest.importorskip("onnxruntime")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.converters import convert  # noqa: E402
from dwkit.decoding.options import DecodeOptions  # noqa: E402
from dwkit.errors import ModelError  # noqa: E402
from dwkit.manifest import read_manifest  # noqa: E402
from dwkit.runtimes import load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402

RUNTIME = RuntimeConfig(threads=2)
# f16 whisper.cpp against fp32 onnxruntime: token probabilities (measured ~1e-3) and DTW jump
# frames (measured: identical; one 20 ms frame either way is allowed).
PROB_ATOL = 2e-2
FRAME_TOLERANCE = 1


@pytest.fixture(scope="module")
def ggml_f16(tiny_en_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = convert(tiny_en_dir, tmp_path_factory.mktemp("ggml") / "f16", "ggml", "f16", validate=False).out_dir
    backend = load(out, config=RUNTIME)  # flash attention on: the DTW context turns it off itself
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def window(tiny_words_onnx: Path, speech_short, speech_mel: np.ndarray):  # type: ignore[no-untyped-def]
    """speech_short's window, its mel frames, and the onnx fp32 backend's greedy text for it."""
    audio, mel = load_audio(speech_short[0]), speech_mel
    onnx = load(tiny_words_onnx, config=RUNTIME)
    info = onnx.info
    prompt = [info.sot, info.no_timestamps]
    enc = onnx.encode(mel)
    tokens = onnx.generate(enc, [prompt], DecodeOptions(without_timestamps=True))[0].tokens
    text = [t for t in tokens if t < info.eot]
    return onnx, enc, mel, min(len(audio) // 160, 3000), prompt, text


@pytest.fixture(scope="module")
def ggml_alignment(ggml_f16, window):  # type: ignore[no-untyped-def]
    _, _, mel, frames, prompt, text = window
    heads = [(int(layer), int(head)) for layer, head in ggml_f16.info.alignment_heads]
    (alignment,) = ggml_f16.align(ggml_f16.encode(mel), [prompt], [text], [frames], heads)
    return alignment


def test_the_manifest_says_ggml_models_give_word_timestamps(ggml_f16) -> None:  # type: ignore[no-untyped-def]
    assert read_manifest(ggml_f16.model_path.parent)["word_timestamps"] is True


def test_whisper_cpp_aligns_our_tokens_one_row_each(ggml_alignment, window) -> None:  # type: ignore[no-untyped-def]
    onnx, enc, _, frames, prompt, text = window
    assert list(ggml_alignment.text_indices) == list(range(len(text) + 1))  # <|notimestamps|>, text...
    times = ggml_alignment.time_indices
    assert times[0] == 0 and np.all(np.diff(times) >= 0) and times[-1] <= frames // 2
    assert times[-1] > times[1]  # the words spread over the speech, not one frame
    heads = [(int(layer), int(head)) for layer, head in onnx.info.alignment_heads]
    _, logits = onnx.cross_attentions(enc, 0, [*prompt, *text, onnx.info.eot], heads)
    scores = logits[len(prompt) - 1 : len(prompt) - 1 + len(text), : onnx.info.eot].astype(np.float64)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    expected = [scores[i, t] / scores[i].sum() for i, t in enumerate(text)]
    assert np.abs(np.array(ggml_alignment.token_probs) - expected).max() < PROB_ATOL


@pytest.mark.skipif(
    importlib.util.find_spec("dwkit.alignment") is None, reason="needs the shared DTW (dwkit.alignment)"
)
def test_whisper_cpp_dtw_gives_the_shared_dtw_jump_frames(ggml_alignment, window) -> None:  # type: ignore[no-untyped-def]
    onnx, enc, _, frames, prompt, text = window
    heads = [(int(layer), int(head)) for layer, head in onnx.info.alignment_heads]
    (reference,) = onnx.align(enc, [prompt], [text], [frames], heads)

    def jump_frames(alignment) -> np.ndarray:  # type: ignore[no-untyped-def]
        jumps = np.pad(np.diff(alignment.text_indices), (1, 0), constant_values=1).astype(bool)
        return alignment.time_indices[jumps]

    ours, theirs = jump_frames(ggml_alignment), jump_frames(reference)
    print(f"\nggml f16 jump frames {list(ours)}\nonnx fp32 jump frames {list(theirs)}")
    assert len(ours) == len(theirs) and np.abs(ours - theirs).max() <= FRAME_TOLERANCE


def test_the_dtw_state_is_reused_without_carrying_anything_over(ggml_f16, ggml_alignment, window) -> None:  # type: ignore[no-untyped-def]
    _, _, mel, frames, prompt, text = window
    enc = ggml_f16.encode(mel)
    heads = [(int(layer), int(head)) for layer, head in ggml_f16.info.alignment_heads]
    (short,) = ggml_f16.align(enc, [prompt], [text[:3]], [frames], heads)
    (again,) = ggml_f16.align(enc, [prompt], [text], [frames], heads)
    assert len(short.time_indices) == 4
    assert list(again.time_indices) == list(ggml_alignment.time_indices)
    assert again.token_probs == ggml_alignment.token_probs


def test_empty_text_bad_heads_and_overlong_windows(ggml_f16, window) -> None:  # type: ignore[no-untyped-def]
    _, _, mel, frames, prompt, text = window
    enc = ggml_f16.encode(mel)
    (empty,) = ggml_f16.align(enc, [prompt], [[]], [frames], [(3, 0)])
    assert list(empty.text_indices) == [0] and list(empty.time_indices) == [0] and empty.token_probs == []
    with pytest.raises(ModelError, match=r"alignment heads \[\(9, 0\)\] are outside"):
        ggml_f16.align(enc, [prompt], [text], [frames], [(9, 0)])
    with pytest.raises(ModelError, match="decodes at most 219 per window"):
        ggml_f16.align(enc, [prompt], [text * 40], [frames], [(3, 0)])
