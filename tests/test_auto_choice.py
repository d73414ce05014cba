"""`backend = "auto"` on a large transformers checkpoint runs what was measured fastest for the
kind of CPU it runs on (dwkit/data/auto_choice.toml), from the backends usable here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dwkit import config as config_module
from dwkit import cpu_choice, devices, runtimes
from dwkit.config import Config

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"})
EPYC = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
AVX2 = frozenset({"avx", "avx2", "fma"})


def _usable(name: str, device: str) -> str | None:
    return None


def _without(*missing: str):  # type: ignore[no-untyped-def]
    return lambda name, device: f"needs {name}" if name in missing else None


@pytest.mark.parametrize(
    ("flags", "kind", "spec"),
    [
        (AMX, "amx", "openvino:int8"),
        (EPYC, "avx512_bf16", "openvino:int8"),
        (AVX2, "avx2", "openvino:int8"),
        (frozenset(), "generic", "hf:fp32"),
    ],
)
def test_each_kind_of_cpu_gets_its_row(flags, kind: str, spec: str) -> None:  # type: ignore[no-untyped-def]
    choice = cpu_choice.choose(_usable, flags=flags)
    assert choice is not None and (choice.kind, choice.spec) == (kind, spec) and choice.reason


def test_a_missing_backend_moves_down_the_rows_list_and_says_so() -> None:
    choice = cpu_choice.choose(_without("openvino"), flags=AMX)
    assert choice is not None and choice.spec == "hf:bf16+ct2:int8"
    assert "openvino:int8 (openvino: needs openvino)" in choice.explain()
    assert cpu_choice.choose(_without("openvino", "ct2"), flags=AMX).spec == "hf:bf16+onnx:int8"  # type: ignore[union-attr]
    assert cpu_choice.choose(_without("openvino"), flags=EPYC).spec == "onnx:int8"  # type: ignore[union-attr]
    assert cpu_choice.choose(_without("openvino", "onnx"), flags=AVX2).spec == "ct2:int8"  # type: ignore[union-attr]
    assert cpu_choice.choose(_without("openvino", "ct2", "onnx"), flags=AVX2).spec == "hf:fp32"  # type: ignore[union-attr]
    assert cpu_choice.choose(_without("hf", "ct2", "onnx", "openvino"), flags=AVX2) is None


def _checkpoint(tmp_path: Path, d_model: int) -> Path:
    directory = tmp_path / f"ckpt-{d_model}"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"d_model": d_model}))
    return directory


def test_config_auto_runs_the_cpus_choice_on_a_large_checkpoint_and_logs_why(
    tmp_path, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(devices, "cpu_flags", lambda: AMX)
    monkeypatch.setattr(config_module, "backend_unavailable_reason", _usable)
    with caplog.at_level(logging.INFO, logger="dwkit.config"):
        config = Config.from_dict({"model": str(_checkpoint(tmp_path, 1280))})
    assert config.resolved_backend == "openvino:int8+openvino:int8"  # equal sides: one backend
    assert "backend auto: chose openvino:int8 for" in caplog.text and "CPU kind amx" in caplog.text
    monkeypatch.setattr(config_module, "backend_unavailable_reason", _without("openvino"))
    pair = Config.from_dict({"model": str(_checkpoint(tmp_path, 1024))})
    assert pair.resolved_backend == "hf:bf16+ct2:int8"


def test_small_checkpoints_a_set_precision_or_a_named_backend_keep_the_old_rule(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(devices, "cpu_flags", lambda: AMX)
    monkeypatch.setattr(config_module, "backend_unavailable_reason", _usable)
    assert Config.from_dict({"model": str(_checkpoint(tmp_path, 384))}).resolved_backend == "hf"
    large = str(_checkpoint(tmp_path, 1280))
    assert Config.from_dict({"model": large, "precision": "bf16"}).resolved_backend == "hf"
    assert Config.from_dict({"model": large, "backend": "hf"}).resolved_backend == "hf"


def test_dwkit_backends_shows_the_choice(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from dwkit.cli.main import main

    monkeypatch.setattr(devices, "cpu_flags", lambda: AMX)
    monkeypatch.setattr(devices, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(runtimes, "unavailable_reason", _usable)  # no library probed: fast
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert (
        "auto on this CPU (avx2, avx512f, avx512_bf16, avx512_vnni, amx_bf16, amx_int8, amx_tile: kind amx)"
        in out
    )
    assert "as openvino:int8: AMX: OpenVINO's NNCF int8 encoder runs on the AMX int8 units" in out
    assert main(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["hf"]["auto"]["spec"] == "openvino:int8" and rows["ct2"]["auto"] is None


def test_a_first_use_conversion_that_would_not_fit_in_memory_moves_down_the_list(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from safetensors.numpy import save_file

    from dwkit.conversion_cache import conversion_dir

    monkeypatch.setenv("DWKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(devices, "cpu_flags", lambda: EPYC)
    monkeypatch.setattr(config_module, "backend_unavailable_reason", _usable)
    checkpoint = _checkpoint(tmp_path, 1280)
    save_file({"w": np.zeros((10, 100), np.float32)}, str(checkpoint / "model.safetensors"))
    assert cpu_choice.checkpoint_parameters(checkpoint) == 1000
    need = 5.4 * 4 * 1000  # openvino int8's measured peak per fp32 byte
    monkeypatch.setattr(cpu_choice, "available_memory", lambda: int(need) - 1)
    config = Config.from_dict({"model": str(checkpoint)})
    assert config.resolved_backend == "onnx:int8+onnx:int8"
    assert "first-use conversion to openvino int8 needs" in config.backend_reason
    monkeypatch.setattr(cpu_choice, "available_memory", lambda: int(need) + 1)
    assert Config.from_dict({"model": str(checkpoint)}).resolved_backend == "openvino:int8+openvino:int8"
    # once converted (cached), the conversion costs nothing: chosen whatever the free memory
    monkeypatch.setattr(cpu_choice, "available_memory", lambda: 0)
    cached = conversion_dir(checkpoint, "openvino", "int8")
    cached.mkdir(parents=True)
    (cached / "dwkit.json").write_text("{}")
    assert Config.from_dict({"model": str(checkpoint)}).resolved_backend == "openvino:int8+openvino:int8"
