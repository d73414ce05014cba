"""Pair specs where users write them: `--backend`, config files, parity candidates, bench specs.

Each mistake is one line naming what is wrong (no model is loaded: these run in milliseconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dwkit.bench.config import BenchConfig, parse_backends
from dwkit.bench.plan import conversions_for, wanted_conversions
from dwkit.config import Config
from dwkit.errors import ConfigError
from dwkit.parity.candidates import Candidate


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A directory dwkit recognises as a transformers checkpoint (config checks read no weights)."""
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def _config(checkpoint: Path, **keys) -> Config:  # type: ignore[no-untyped-def]
    return Config.from_dict({"model": str(checkpoint), **keys}, source="svc.toml")


def test_backend_and_tables_give_the_same_pair(checkpoint: Path) -> None:
    inline = _config(checkpoint, backend="hf:bf16+ct2:int8")
    tables = _config(
        checkpoint,
        encoder={"backend": "hf", "precision": "bf16"},
        decoder={"backend": "ct2", "precision": "int8"},
    )
    assert inline.resolved_backend == tables.resolved_backend == "hf:bf16+ct2:int8"
    assert inline.pair == tables.pair and inline.pair is not None and inline.pair.decoder.precision == "int8"
    env = Config.from_dict({"model": str(checkpoint)}, env={"DWKIT_BACKEND": "ct2:int8+hf"})
    assert env.resolved_backend == "ct2:int8+hf"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"backend": "tf:bf16+ct2:int8"}, r"unknown encoder backend 'tf'; choose one of hf, ct2"),
        ({"backend": "hf+ggml:q8_0"}, r"ggml backend cannot be the decoder of a pair: it cannot take"),
        ({"backend": "ggml+hf"}, r"ggml backend cannot be the encoder of a pair: it cannot hand"),
        ({"backend": "hf:int8+ct2"}, r"'int8' is not a hf precision \(encoder\); choose one of fp32"),
        ({"backend": "hf+ct2:q4_0"}, r"'q4_0' is not a ct2 precision \(decoder\)"),
        ({"backend": "hf+ct2+onnx"}, r"expected ENCODER\[:PRECISION\]\+DECODER\[:PRECISION\]"),
        (
            {"backend": "hf+ct2", "precision": "int8"},
            r"precision = \"int8\" with the pair hf\+ct2: a pair sets a precision per side",
        ),
        (
            {"encoder": {"backend": "hf"}},
            r"decoder.backend: not set; a pair needs both \[encoder\] and \[decoder\]",
        ),
        (
            {"backend": "ct2", "encoder": {"backend": "hf"}, "decoder": {"backend": "ct2"}},
            r"both choose the backend",
        ),
        (
            {"backend": "hf+ct2", "decoder": {"backend": "ct2"}},
            r"\[decoder\] and backend = \"hf\+ct2\" both set the pair",
        ),
        (
            {"encoder": {"backend": "hf", "precision": "fp16"}, "decoder": {"backend": "ct2"}},
            r"encoder precision with hf needs a CUDA device",
        ),
    ],
)
def test_pair_mistakes_are_one_line_errors(checkpoint: Path, keys, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as caught:
        _config(checkpoint, **keys)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("svc.toml: ")


def test_a_side_whose_library_is_missing_is_refused(checkpoint: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dwkit import devices

    real = devices.module_installed
    monkeypatch.setattr(devices, "module_installed", lambda name: name != "ctranslate2" and real(name))
    with pytest.raises(
        ConfigError, match=r"backend = \"ct2\": needs ctranslate2: pip install 'dwkit\[ct2\]'"
    ):
        _config(checkpoint, backend="hf:bf16+ct2:int8")


def test_parity_candidate_pair_is_gated_at_its_looser_side(checkpoint: Path) -> None:
    candidate = Candidate.parse(f"hf:bf16+ct2:int8:{checkpoint}")
    assert (candidate.backend, candidate.path, candidate.precision) == ("hf:bf16+ct2:int8", checkpoint, None)
    assert candidate.resolve_precision() == "int8"
    assert Candidate.parse(f"ct2+hf:{checkpoint}").resolve_precision() == "float32"  # both sides fp32-class
    assert Candidate.parse(f"hf:bf16+hf:fp32:{checkpoint}").resolve_precision() == "bf16"
    with pytest.raises(ConfigError, match=r"unknown decoder backend 'tf'"):
        Candidate.parse(f"hf+tf:{checkpoint}")


def test_bench_pair_specs_convert_only_the_side_the_checkpoint_lacks() -> None:
    specs = parse_backends("hf:bf16+ct2:int8,ct2:int8+hf,hf+onnx:int8")
    assert [s.label for s in specs] == [
        "hf fp32",
        "hf bf16 + ct2 int8",
        "ct2 int8 + hf fp32",
        "hf fp32 + onnx int8",
    ]
    assert conversions_for(specs[1]) == {"decoder": ("ct2", "int8")}
    assert conversions_for(specs[2]) == {"encoder": ("ct2", "int8")}
    config = BenchConfig(model="tiny.en", backends=specs, modes=("sequential",), peers=False)
    assert wanted_conversions(config, []) == [("ct2", "int8"), ("onnx", "int8")]
    with pytest.raises(
        ConfigError, match=r"backend spec 'hf\+ct2\+draft': a pair cannot decode with a draft"
    ):
        parse_backends("hf+ct2+draft")
    with pytest.raises(ConfigError, match=r"backend spec 'hf\+ggml': .*ggml backend cannot be the decoder"):
        parse_backends("hf+ggml")


def test_a_bench_pair_runs_from_the_checkpoint_with_its_converted_side(tmp_path: Path) -> None:
    from dwkit.bench.convert import Conversions
    from dwkit.bench.plan import plan_targets

    config = BenchConfig(model="tiny.en", backends=parse_backends("hf:bf16+ct2:int8"), modes=("sequential",))
    converted = Conversions()
    converted.dirs[("ct2", "int8")] = tmp_path / "ct2-int8"
    targets = plan_targets(config, tmp_path / "ckpt", converted, [])
    pair = targets[1]
    assert (pair.label, pair.model_dir, pair.error) == ("hf bf16 + ct2 int8", tmp_path / "ckpt", None)
    assert pair.options == {"decoder_model": str(tmp_path / "ct2-int8")}
    failed = Conversions()
    failed.errors[("ct2", "int8")] = "out of memory"
    assert (
        plan_targets(config, tmp_path / "ckpt", failed, [])[1].error
        == "conversion to ct2 int8 failed: out of memory"
    )
