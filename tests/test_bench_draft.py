"""`dwkit bench` with a draft model: `+draft` specs, acceptance and speed against the plain row."""

import pytest

from dwkit.bench.compare import add_ratios
from dwkit.bench.config import BenchConfig, parse_backends
from dwkit.errors import ConfigError
from dwkit.synthetic import make_student


def test_draft_specs_parse_and_need_a_draft_model(random_tiny80_dir):
    specs = parse_backends("hf:fp32+draft,onnx:fp32+draft,hf:fp32")
    assert [s.label for s in specs] == ["hf fp32", "hf fp32 +draft", "onnx fp32 +draft"]
    assert not specs[1].is_baseline and specs[1].text == "hf:fp32+draft"
    with pytest.raises(ConfigError, match="needs a draft model"):
        BenchConfig(model=str(random_tiny80_dir), backends=specs)
    config = BenchConfig(model=str(random_tiny80_dir), backends=specs, draft="student")
    assert config.to_dict()["backends"] == ["hf:fp32", "hf:fp32+draft", "onnx:fp32+draft"]


def test_a_draft_row_reports_acceptance_and_the_same_text(random_tiny80_dir, speech_short, tmp_path):
    from dwkit.bench.worker import run_job

    student = make_student(random_tiny80_dir, tmp_path / "student")
    job = {
        "kind": "run",
        "system": "dwkit",
        "backend": "hf",
        "precision": "fp32",
        "model_dir": str(random_tiny80_dir),
        "mode": "sequential",
        "audio": [str(speech_short[0])],
        "repeat": 1,
        "threads": 1,
        "language": "en",
        "tokens_per_window": 8,
        "warmup": True,
    }
    plain = run_job(job)
    drafted = run_job({**job, "draft_model": str(student), "draft_precision": "fp32", "draft_tokens": 3})
    assert "error" not in drafted, drafted
    stats = drafted["draft"]
    assert stats["tokens"] == 8 and stats["proposed"] >= stats["accepted"] >= 0  # warm-up excluded
    assert drafted["settings"]["draft"]["shares_encoder"] is True
    rows = [
        {**plain, "label": "hf fp32", "system": "dwkit", "mode": "sequential"},
        {**drafted, "label": "hf fp32 +draft", "system": "dwkit", "mode": "sequential"},
    ]
    add_ratios(rows)
    assert rows[1]["draft"]["same_text_as_without"] is True
    assert rows[1]["draft"]["speedup_vs_without"] > 0


def test_a_converted_copy_as_the_draft_is_converted_once(random_tiny80_dir):
    from dwkit.bench.config import SystemSpec
    from dwkit.bench.plan import wanted_conversions

    specs = parse_backends("hf:fp32+draft")
    config = BenchConfig(model=str(random_tiny80_dir), backends=specs, draft="ct2:int8", peers=False)
    assert config.draft_spec == SystemSpec("ct2", "int8")
    assert wanted_conversions(config, []) == [("ct2", "int8")]
    plain = BenchConfig(model=str(random_tiny80_dir), draft="ct2:int8", peers=False)
    assert wanted_conversions(plain, []) == []  # no +draft spec: the draft is never needed
