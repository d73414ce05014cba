"""Encoder/decoder pairs on the bundled tiny.en: the encoder of one backend, the decoder of another.

At fp32 a pair must decode exactly what its decoder side decodes alone (the encoders differ by
~2e-4 on speech_short), and the states must cross without a copy where the libraries allow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ctranslate2")
pytest.importorskip("transformers")

from dwkit.audio import load_audio  # noqa: E402
from dwkit.compare import compare_backends  # noqa: E402
from dwkit.errors import ConfigError, ModelError  # noqa: E402
from dwkit.features import log_mel  # noqa: E402
from dwkit.runtimes import load  # noqa: E402
from dwkit.runtimes.base import RuntimeConfig  # noqa: E402
from dwkit.runtimes.pair import PairBackend, PairSpec, Side, conversion_of  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402

ENCODER_ATOL = 1e-3  # hf fp32 vs ct2 float32 encoders (tests/runtimes/test_ct2_backend.py)
RUNTIME = RuntimeConfig(threads=2)
MAX_TOKENS = 24  # enough to diverge if the states were wrong; keeps the step decoders quick


@pytest.fixture(scope="module")
def short_mel(speech_short) -> np.ndarray:  # type: ignore[no-untyped-def]
    audio, _ = speech_short
    return log_mel(load_audio(audio), 80)[None]


@pytest.fixture(scope="module")
def ct2_dir(tiny_en_dir: Path) -> Path:
    """The directory a pair's ct2 float32 side runs on: tiny.en converted through the cache."""
    from dwkit.parity.conversions import converted_candidate

    return converted_candidate(tiny_en_dir, "ct2", "float32").path


@pytest.fixture(scope="module")
def alone(tiny_en_dir: Path, ct2_dir: Path):  # type: ignore[no-untyped-def]
    """Each backend alone at fp32."""
    return {"hf": load(tiny_en_dir, "hf", RUNTIME), "ct2": load(ct2_dir, "ct2", RUNTIME)}


@pytest.fixture(scope="module")
def pairs(tiny_en_dir: Path):  # type: ignore[no-untyped-def]
    """Pairs by spec, each loaded once for the module."""
    loaded: dict[str, PairBackend] = {}

    def get(spec: str) -> PairBackend:
        if spec not in loaded:
            loaded[spec] = load(tiny_en_dir, spec, RUNTIME)  # type: ignore[assignment]
        return loaded[spec]

    return get


@pytest.mark.parametrize(
    ("pair", "decoder"),
    [("hf:fp32+ct2:float32", "ct2"), ("ct2:float32+hf:fp32", "hf")],
    ids=["hf+ct2", "ct2+hf"],
)
def test_a_pair_decodes_what_its_decoder_decodes_alone(pairs, alone, short_mel, pair, decoder) -> None:  # type: ignore[no-untyped-def]
    backend = pairs(pair)
    assert isinstance(backend, PairBackend) and backend.name == pair
    assert type(backend.encoder).__name__ != type(backend.decoder).__name__
    report = compare_backends(alone[decoder], backend, short_mel, max_new_tokens=MAX_TOKENS)
    assert report.tokens_equal and len(report.reference_tokens) == MAX_TOKENS
    assert 0 < report.encoder_max_abs <= ENCODER_ATOL  # the other backend's encoder did run
    assert backend.detect_language(backend.encode(short_mel)) == [{"en": 1.0}]
    hf = backend.encoder if decoder == "ct2" else backend.decoder
    kept, dropped = ("encoder", "decoder") if decoder == "ct2" else ("decoder", "encoder")
    assert getattr(hf.model.model, kept) is not None and getattr(hf.model.model, dropped) is None
    assert (hf.model.proj_out is None) == (kept == "encoder")  # tied to the decoder's embedding
    if decoder == "hf":
        with pytest.raises(ModelError, match=r"pair's decoder side, without its encoder"):
            hf.encode(short_mel)


@pytest.mark.slow  # an onnx export of tiny.en when the cache lacks it
def test_hf_and_onnx_pair_decodes_what_onnx_decodes_alone(tiny_en_dir, short_mel) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    from dwkit.parity.conversions import converted_candidate

    backend = load(tiny_en_dir, "hf:fp32+onnx:fp32", RUNTIME)
    alone = load(converted_candidate(tiny_en_dir, "onnx", "fp32").path, "onnx", RUNTIME)
    report = compare_backends(alone, backend, short_mel, max_new_tokens=MAX_TOKENS)
    assert report.tokens_equal and len(report.reference_tokens) == MAX_TOKENS


def test_states_cross_without_a_copy_at_fp32_on_the_cpu(alone, short_mel) -> None:  # type: ignore[no-untyped-def]
    hf, ct2 = alone["hf"], alone["ct2"]
    enc = hf.encode(short_mel)
    array = hf.encoder_array(enc)
    assert np.shares_memory(array, enc.data.numpy())
    handed = ct2.encoder_states_from_array(array)
    assert np.shares_memory(np.asarray(handed.data), array)
    back = hf.encoder_states_from_array(ct2.encoder_array(handed))
    assert np.shares_memory(back.data.numpy(), array)


def test_a_pair_transcribes_like_its_decoder_side(tiny_en_dir, pairs, alone, speech_short) -> None:  # type: ignore[no-untyped-def]
    from dwkit.tokenizer import Tokenizer

    audio, _ = speech_short
    backend = pairs("hf:fp32+ct2:float32")
    pair = Transcriber(backend, Tokenizer.from_model_dir(tiny_en_dir, backend.info))
    single = Transcriber(alone["ct2"], pair.tokenizer, pair.options)
    transcript = pair.transcribe(audio)
    assert transcript.backend == "hf:fp32+ct2:float32"
    assert transcript.text == single.transcribe(audio).text and "platform" in transcript.text.lower()


def test_equal_sides_are_that_backend_alone(tiny_en_dir) -> None:  # type: ignore[no-untyped-def]
    backend = load(tiny_en_dir, "ct2:float32+ct2:float32", RUNTIME)
    assert type(backend).__name__ == "CT2Backend"


def test_two_given_directories_and_their_errors(tiny_en_dir, ct2_dir) -> None:  # type: ignore[no-untyped-def]
    backend = load(tiny_en_dir, "ct2:float32+hf:fp32", RuntimeConfig(options={"encoder_model": str(ct2_dir)}))
    assert isinstance(backend, PairBackend) and type(backend.encoder).__name__ == "CT2Backend"
    backend.close()
    with pytest.raises(ModelError, match=r"is a ct2 model; a pair runs from the transformers checkpoint"):
        load(ct2_dir, "hf:fp32+ct2:float32", RUNTIME)
    with pytest.raises(
        ConfigError, match=r"backend options flash_attention unknown; a pair reads encoder_model"
    ):
        load(tiny_en_dir, "hf+ct2", RuntimeConfig(options={"flash_attention": True}))


def test_conversion_of_each_side() -> None:
    assert conversion_of("hf", "bf16") is None
    assert conversion_of("ct2", "int8") == ("ct2", "int8")
    assert conversion_of("ct2", "int16") == ("ct2", "float16")  # not a converter type: run from float16
    assert conversion_of("onnx", "int8") == ("onnx", "int8")
    assert PairSpec.parse("hf+ct2") == PairSpec(Side("hf", None), Side("ct2", None))
    assert [s.resolved_precision() for s in (Side("hf", None), Side("ct2", None))] == ["fp32", "float32"]
