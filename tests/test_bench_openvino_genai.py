"""The `openvino-genai` bench peer: its export loads in WhisperPipeline, transcribes real speech
like transformers fp32, decodes exactly N tokens per window in forced mode, and is planned only
where named and installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from dwkit.bench.config import BenchConfig, parse_backends
from dwkit.bench.openvino_genai import DECODER_FILE, ENCODER_FILE, FORMAT

needs_genai = pytest.mark.skipif(
    importlib.util.find_spec("openvino_genai") is None
    or importlib.util.find_spec("openvino_tokenizers") is None,
    reason="openvino-genai / openvino-tokenizers are not installed: pip install 'dwkit[openvino]'",
)


@pytest.fixture(scope="module")
def genai_int8_dir(tiny_en_dir: Path, dwkit_cache: Path) -> Path:
    """tiny.en exported for WhisperPipeline with int8 weights, through the bench's cache."""
    pytest.importorskip("openvino_genai")
    pytest.importorskip("openvino_tokenizers")
    from dwkit.bench import openvino_genai
    from dwkit.bench.worker import run_job
    from dwkit.conversion_cache import cached_conversion

    def convert(out: Path) -> dict[str, Any]:
        job = {"kind": openvino_genai.JOB_KIND, "source": str(tiny_en_dir), "out_dir": str(out)}
        return run_job({**job, "precision": "int8"})

    out, result = cached_conversion(
        tiny_en_dir, FORMAT, "int8", convert, dwkit_cache, openvino_genai.__name__
    )
    assert result is None or "error" not in result, result
    return out


def _run(model_dir: Path, speech: Path, **job: Any) -> dict[str, Any]:
    from dwkit.bench.worker import run_job

    base = {
        "kind": "run",
        "model_dir": str(model_dir),
        "mode": "sequential",
        "audio": [str(speech)],
        "repeat": 1,
        "threads": 2,
        "warmup": False,
    }
    result = run_job({**base, **job})
    assert "error" not in result, result
    return result


@needs_genai
def test_export_is_the_stateful_layout_whisper_pipeline_loads(genai_int8_dir: Path):
    import openvino as ov
    import openvino_genai

    from dwkit.manifest import read_manifest

    core = ov.Core()
    encoder = core.read_model(str(genai_int8_dir / ENCODER_FILE))
    decoder = core.read_model(str(genai_int8_dir / DECODER_FILE))
    assert encoder.input(0).get_any_name() == "input_features"
    assert encoder.output(0).get_any_name() == "last_hidden_state"
    inputs = {port.get_any_name() for port in decoder.inputs}
    assert inputs == {"input_ids", "encoder_hidden_states", "cache_position", "beam_idx"}
    # tiny.en: 4 decoder layers, a self-attention key and value plus a cross key and value each
    assert len(decoder.get_variables()) == 4 * 4
    manifest = read_manifest(genai_int8_dir)
    assert manifest is not None and (manifest["format"], manifest["precision"]) == (FORMAT, "int8")
    int8 = [
        op
        for op in decoder.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.u8
    ]
    assert int8, "int8 export kept no int8 weights"
    openvino_genai.WhisperPipeline(str(genai_int8_dir), "CPU", INFERENCE_NUM_THREADS=1)


@needs_genai
def test_peer_transcribes_speech_as_transformers_fp32(genai_int8_dir, tiny_en_dir, speech_short, simple_wer):
    path, spoken = speech_short
    peer = _run(genai_int8_dir, path, system="openvino-genai", precision="int8")
    hf = _run(tiny_en_dir, path, system="dwkit", backend="hf", precision="fp32")
    # int8 weights on tiny.en's 39M parameters may move a word; these two espeak sentences are
    # the ones tiny.en fp32 itself transcribes without error, so any drift shows.
    assert simple_wer(hf["texts"][0], peer["texts"][0]) <= 0.1, (hf["texts"], peer["texts"])
    assert simple_wer(spoken, peer["texts"][0]) <= 0.1, peer["texts"]
    assert peer["windows"] == 1 and peer["tokens"] > 10  # GenAI's own per-inference figures
    assert peer["encoder_ms_per_window"] > 0 and peer["decoder_ms_per_token"] > 0
    assert peer["settings"]["INFERENCE_NUM_THREADS"] == 2
    assert "compress_weights INT8_ASYM" in peer["settings"]["weights"]


@needs_genai
def test_forced_mode_decodes_exactly_n_tokens_per_window(genai_int8_dir, speech_short):
    path, _ = speech_short
    result = _run(genai_int8_dir, path, system="openvino-genai", precision="int8", tokens_per_window=7)
    assert (result["windows"], result["tokens"], result["tokens_per_window"]) == (1, 7, 7.0)
    assert "forced mode" in result["settings"]["suppress_tokens"]


def test_planner_runs_the_peer_only_where_named_and_installed(monkeypatch, tiny_en_dir):
    from dwkit.bench import plan
    from dwkit.bench.convert import Conversions

    def rows(peers: Any, backends: str = "openvino:int8") -> list[tuple[str, str]]:
        config = BenchConfig(
            model="tiny.en", backends=parse_backends(backends), peers=peers, modes=("sequential",)
        )
        found = plan.available_peers(config)
        return [(t.system, t.label) for t in plan.plan_targets(config, tiny_en_dir, Conversions(), found)]

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "openvino_genai" else real_find_spec(name, *a),
    )
    assert ("openvino-genai", "openvino-genai int8") in rows(["openvino-genai"])
    assert ("openvino-genai", "openvino-genai fp32") in rows(["openvino-genai"], "openvino:fp32")
    assert not any(system == "openvino-genai" for system, _ in rows(True))  # named only
    config = BenchConfig(model="tiny.en", backends=parse_backends("openvino:int8"), peers=["openvino-genai"])
    assert (FORMAT, "int8") in plan.wanted_conversions(config, ["openvino-genai"])
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openvino_genai" else real_find_spec(name, *a),
    )
    assert rows(["openvino-genai"]) == [("dwkit", "hf fp32"), ("dwkit", "openvino int8")]  # not installed
