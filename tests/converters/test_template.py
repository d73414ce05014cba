"""The conversion template every format runs: option checks, the typed manifest, the
record-or-abort validation step, tolerances from the one thresholds file, and the registry
derived from the formats' own declarations. A stand-in format module (it writes one weights
file) exercises the template without any converter library."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from dwkit import converters
from dwkit.compare import gate, validation_limits
from dwkit.converters import template
from dwkit.converters.template import FormatSpec, Written, check_request
from dwkit.errors import BackendUnavailable, ConversionError, ModelError, ValidationError
from dwkit.manifest import MANIFEST_VERSION, Manifest, read_manifest, weights_checksum, write_manifest
from dwkit.model_info import ModelInfo

SPEC = FormatSpec(
    name="fake",
    module="tests.converters.fake_format",
    extra="fake",
    precisions=("fp32", "int4"),
    default_precision="fp32",
    options=("threads",),
    libraries=("numpy",),
    side_files=("tokenizer.json", "absent.json"),
)


def fake_format(verdict: dict[str, Any] | None, calls: list[str]) -> types.ModuleType:
    """A format module: writes `model.ggml`, declares two extra manifest fields."""
    module = types.ModuleType("fake_format")

    def check_options(source: Path, precision: str, opts: dict[str, Any], manifest: Any) -> dict[str, Any]:
        calls.append("check_options")
        return {"threads": int(opts.get("threads", 0))}

    def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> Written:
        calls.append("write")
        with stages("write"):
            (out / "model.ggml").write_bytes(b"weights")
        assert job.info is not None
        return Written(job.info, {"model_file": "model.ggml", "threads": job.options["threads"]})

    def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any] | None:
        calls.append("validate")
        assert (model_dir / "model.ggml").is_file() and read_manifest(model_dir) is not None
        return verdict

    module.FORMAT = SPEC  # type: ignore[attr-defined]
    module.check_options = check_options  # type: ignore[attr-defined]
    module.write = write  # type: ignore[attr-defined]
    module.validate_model = validate_model  # type: ignore[attr-defined]
    return module


def test_unknown_precisions_and_options_are_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ConversionError, match="unknown precision 'q8' for fake; choose one of fp32, int4"):
        check_request(SPEC, "q8", {})
    with pytest.raises(
        ConversionError, match="fake conversion does not take dry_run, opset; it takes threads"
    ):
        check_request(SPEC, "fp32", {"opset": 17, "dry_run": True})
    bare = FormatSpec("bare", "m", "bare", ("fp32",), "fp32")
    with pytest.raises(ConversionError, match="bare conversion does not take threads; it takes none"):
        check_request(bare, "fp32", {"threads": 2})
    check_request(SPEC, "int4", {"threads": 2})  # accepted


def test_the_template_writes_a_typed_manifest_and_the_result(random_tiny80_dir: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    verdict = {"passed": True, "failures": [], "reference": "hf fp32"}
    out = tmp_path / "model"
    result = template.run(fake_format(verdict, calls), random_tiny80_dir, out, "int4", threads=3)
    assert calls == ["check_options", "write", "validate"]
    manifest = read_manifest(out)
    assert manifest == result.manifest and result.validation == verdict
    assert manifest["manifest_version"] == MANIFEST_VERSION
    assert (manifest["format"], manifest["precision"], manifest["tool"]) == ("fake", "int4", SPEC.module)
    assert manifest["source"] == {
        "path": str(random_tiny80_dir.resolve()),
        "weights_checksum": weights_checksum(random_tiny80_dir),
    }
    assert manifest["weights_checksum"] == weights_checksum(out)
    assert manifest["model_info"] == ModelInfo.from_hf_dir(random_tiny80_dir).to_dict()
    assert manifest["model_file"] == "model.ggml" and manifest["threads"] == 3
    assert set(manifest["library_versions"]) == {"dwkit", "numpy"}
    assert set(manifest["stage_seconds"]) == {"write", "validate"}
    assert result.files == ["dwkit.json", "model.ggml", "tokenizer.json"]  # absent side files skipped
    assert list(manifest)[0] == "manifest_version" and list(manifest)[-1] == "validation"


@pytest.mark.parametrize(
    ("verdict", "kept"),
    [
        ({"passed": False, "failures": ["logits cosine 0.1 < 0.995"], "reference": "hf fp32"}, False),
        ({"passed": None, "failures": [], "note": "could not run"}, True),  # not run: recorded
        (None, True),  # nothing to run (a TensorRT dry run)
    ],
)
def test_record_or_abort(random_tiny80_dir: Path, tmp_path: Path, verdict: Any, kept: bool) -> None:
    out = tmp_path / "model"
    module = fake_format(verdict, [])
    if kept:
        template.run(module, random_tiny80_dir, out, "fp32")
        assert read_manifest(out)["validation"] == verdict
    else:
        with pytest.raises(
            ValidationError, match=r"^fake fp32 does not match transformers: logits cosine 0\.1"
        ):
            template.run(module, random_tiny80_dir, out, "fp32")
        assert list(tmp_path.iterdir()) == []


def test_no_validate_skips_the_runtime(random_tiny80_dir: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    result = template.run(
        fake_format({"passed": False, "failures": ["x"]}, calls),
        random_tiny80_dir,
        tmp_path / "m",
        "fp32",
        validate=False,
    )
    assert calls == ["check_options", "write"] and result.validation is None


def test_sources_the_format_does_not_read_are_refused(tmp_path: Path) -> None:
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    write_manifest(ct2, {"format": "ct2", "precision": "int8"})
    with pytest.raises(
        ConversionError, match="is a ct2 model; convert to fake from the transformers checkpoint$"
    ):
        template.run(fake_format(None, []), ct2, tmp_path / "out", "fp32")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError):
        template.run(fake_format(None, []), bert, tmp_path / "out", "fp32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert", "ct2"]


def test_the_manifest_dataclass_keeps_the_file_format() -> None:
    manifest = Manifest(
        "onnx",
        "fp32",
        {"path": "/m"},
        "dwkit.converters.onnx",
        "abc",
        {},
        {"n_mels": 80},
        fields={"opset": 18},
    )
    data = manifest.to_dict()
    assert data["manifest_version"] == MANIFEST_VERSION == 1  # files written before stay readable
    for key in ("format", "precision", "source", "tool", "weights_checksum", "model_info", "validation"):
        assert key in data
    assert data["opset"] == 18 and "fields" not in data


# -- the registry --------------------------------------------------------------------------------


def test_formats_and_choices_come_from_the_modules_declarations() -> None:
    import importlib

    assert converters.format_names() == ("ct2", "onnx", "trt", "ggml", "openvino")
    for name, spec in converters.FORMATS.items():
        module = importlib.import_module(spec.module)
        assert module.FORMAT is spec and spec.name == name
        assert spec.default_precision in spec.precisions
        for function in ("check_options", "write", "validate_model"):
            assert callable(getattr(module, function))
    assert converters.FORMATS["trt"].reads == ("onnx",)


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    spec = replace(converters.FORMATS["ggml"], requires=("dwkit_no_such_library",))
    monkeypatch.setitem(converters.FORMATS, "ggml", spec)
    with pytest.raises(
        BackendUnavailable, match=r"--to ggml needs dwkit_no_such_library: pip install 'dwkit\[ggml\]'"
    ):
        converters.format_module("ggml")
    with pytest.raises(ConversionError, match="unknown format 'mlx'; choose one of ct2, onnx, trt, ggml"):
        converters.format_module("mlx")


# -- tolerances: one place -----------------------------------------------------------------------


def test_validation_tolerances_are_read_from_the_thresholds_file() -> None:
    full = {"logits_atol": 1e-3, "tokens_must_match": True}
    assert validation_limits("ct2", "float32") == validation_limits("onnx", "fp32") == full
    assert validation_limits("trt", "fp32") == full
    assert validation_limits("ggml", "f16") == {
        "logits_cosine_min": 0.9995,
        "logits_atol": 0.5,
        "token_error_rate_max": 0.05,
    }
    assert validation_limits("onnx", "int8") is None and validation_limits("ggml", "f32") is None
    for spec in converters.FORMATS.values():  # every gated precision is one the format has
        from importlib.resources import files

        from dwkit.tomlfile import read_toml_file

        tables = read_toml_file(str(files("dwkit") / "data" / "parity_thresholds.toml"))["validation"]
        assert set(tables.get(spec.name, {})) <= set(spec.precisions)


def test_the_parity_gate_still_reads_the_file() -> None:
    from dwkit.parity import ParityConfig

    assert ParityConfig.load().thresholds("onnx", "fp32")[1]["logits_max_abs"] == 1e-3


def _report(**changes: Any) -> dict[str, Any]:
    report = {
        "logits_max_abs": 2e-5,
        "logits_cosine": 0.99999,
        "tokens_equal": True,
        "first_divergence": None,
        "reference_tokens": [1, 2, 3, 4],
        "candidate_tokens": [1, 2, 3, 4],
    }
    return {**report, **changes}


def test_gate_applies_every_limit_and_records_without_limits() -> None:
    full = validation_limits("onnx", "fp32")
    assert gate(_report(), full) == {"passed": True, "gated": True, "failures": [], "thresholds": full}
    drifted = gate(
        _report(logits_max_abs=0.01, tokens_equal=False, first_divergence=2, candidate_tokens=[1, 2, 9, 4]),
        full,
    )
    assert drifted["failures"] == [
        "first-step logits max abs diff 0.01 > 0.001",
        "greedy tokens differ from index 2",
    ]
    report = _report(logits_cosine=0.9, candidate_tokens=[1, 9, 9, 9], tokens_equal=False, first_divergence=1)
    quantised = gate(report, validation_limits("ggml", "q8_0"))
    assert report["token_error_rate"] == 0.75 and not quantised["passed"]
    assert quantised["failures"][0] == "logits cosine 0.90000 < 0.995"
    assert quantised["failures"][1].startswith("greedy tokens differ (75.0% edits, first at index 1)")
    recorded = gate(_report(logits_max_abs=5.0), None)
    assert recorded == {"passed": True, "gated": False, "failures": [], "thresholds": None}
