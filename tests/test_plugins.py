"""Third-party backends: a distribution with a `dwkit.backends` entry point works wherever a
built-in backend does, and nothing in dwkit names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin_dist import PLUGIN, write_plugin

REPO = Path(__file__).resolve().parent.parent


def _run(root: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "dwkit.cli.main", *argv], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def plugin_root(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("plugin"))


def test_no_file_of_dwkit_names_the_plugin() -> None:
    for root in ("dwkit", "runtimes", "converters"):
        for path in (REPO / root).rglob("*.py"):
            assert PLUGIN not in path.read_text(), path


def test_backends_lists_the_plugin_beside_the_builtin_ones(plugin_root: Path) -> None:
    result = _run(plugin_root, "backends", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows)[:5] == ["hf", "ct2", "onnx", "trt", "ggml"]
    plugin = rows[PLUGIN]
    assert plugin["usable"] and plugin["devices"] == ["cpu"] and plugin["formats"] == ["hf"]
    assert plugin["summary"].startswith("test plugin")


def test_transcribe_and_config_files_run_the_plugin(
    plugin_root: Path, tiny_en_dir, speech_short, tmp_path
) -> None:
    audio = str(speech_short[0])
    builtin = _run(
        plugin_root, "transcribe", audio, "--model", str(tiny_en_dir), "--backend", "hf", "-f", "json"
    )
    assert builtin.returncode == 0, builtin.stderr
    by_flag = _run(
        plugin_root, "transcribe", audio, "--model", str(tiny_en_dir), "--backend", PLUGIN, "-f", "json"
    )
    assert by_flag.returncode == 0, by_flag.stderr
    assert json.loads(by_flag.stdout)["text"] == json.loads(builtin.stdout)["text"]

    config = tmp_path / "svc.toml"
    config.write_text(f'model = "{tiny_en_dir}"\nbackend = "{PLUGIN}"\noutput_format = "json"\n')
    by_config = _run(plugin_root, "transcribe", audio, "--config", str(config))
    assert by_config.returncode == 0, by_config.stderr
    assert json.loads(by_config.stdout)["text"] == json.loads(builtin.stdout)["text"]

    config.write_text(f'model = "{tiny_en_dir}"\nbackend = "{PLUGIN}"\nprecision = "bf16"\n')
    refused = _run(plugin_root, "transcribe", audio, "--config", str(config))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"not a {PLUGIN} precision; choose one of fp32" in refused.stderr


def test_without_the_distribution_the_name_is_unknown(tiny_en_dir, speech_short, tmp_path) -> None:
    result = _run(
        tmp_path, "transcribe", str(speech_short[0]), "--model", str(tiny_en_dir), "--backend", PLUGIN
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert PLUGIN in result.stderr and "hf" in result.stderr


def test_a_broken_plugin_is_listed_with_why_and_breaks_nothing(tmp_path) -> None:
    root = write_plugin(tmp_path / "broken", target="dwkit_no_such_module:BACKEND")
    result = _run(root, "backends", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hf"]["usable"]
    assert not rows[PLUGIN]["usable"] and "dwkit_no_such_module" in rows[PLUGIN]["reason"]


def test_parity_gates_a_plugin_candidate(plugin_root: Path, tiny_en_dir, speech_short, tmp_path) -> None:
    report = tmp_path / "parity.json"
    result = _run(
        plugin_root, "parity", "--model", str(tiny_en_dir), "--candidate", f"{PLUGIN}:{tiny_en_dir}",
        "--audio", str(speech_short[0]), "--modes", "short", "--json", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert [(c["backend"], c["precision"]) for c in data["candidates"]] == [(PLUGIN, "fp32")]


def test_bench_runs_a_plugin_row_beside_the_baseline(
    plugin_root: Path, random_tiny80_dir, speech_short, tmp_path
) -> None:
    result = _run(
        plugin_root, "bench", "--model", str(random_tiny80_dir), "--backends", PLUGIN, "--modes", "sequential",
        "--audio", str(speech_short[0]), "--threads", "1", "--tokens-per-window", "2", "--no-peers",
        "--no-floor", "--no-progress", "--output", str(tmp_path), "--name", "plugin",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["label"]: row for row in json.loads((tmp_path / "plugin.json").read_text())["results"]}
    assert set(rows) == {"hf fp32", f"{PLUGIN} fp32"}
    assert "error" not in rows[f"{PLUGIN} fp32"] and rows[f"{PLUGIN} fp32"]["tokens"] > 0
