"""The backend contract, checked on every backend the registry knows (and on a plugin).

A new backend gets this suite for free: it is parametrised over the declarations, and each
backend runs the bundled real tiny.en in its own format (converted and cached once, at the
precision its declaration calls most faithful). A backend that cannot run here (trt without
an NVIDIA GPU and TensorRT) is checked for the one thing it must still do: refuse clearly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dwkit import runtimes
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import BackendUnavailable
from dwkit.runtimes.base import Backend, StepBackend
from tests.plugin_dist import PLUGIN, write_plugin

CASES = [*runtimes.names(), f"plugin:{PLUGIN}"]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The test plugin on sys.path for this module only (other tests see the built-ins alone)."""
    root = write_plugin(tmp_path_factory.mktemp("plugin"))
    sys.path.insert(0, str(root))
    runtimes.refresh()
    yield PLUGIN
    sys.path.remove(str(root))
    sys.modules.pop("dwkit_hfplugin", None)
    runtimes.refresh()


@pytest.fixture(scope="module")
def mels(speech_short, tiny_en_dir):
    """Two different 30 s windows: speech, and the same speech shifted (another audio row)."""
    from dwkit.audio import load_audio
    from dwkit.features import log_mel
    from dwkit.model_info import ModelInfo

    n_mels = ModelInfo.from_model_dir(tiny_en_dir).n_mels
    samples = load_audio(speech_short[0])
    shifted = np.concatenate([np.zeros(16000, dtype=np.float32), samples])
    return np.stack([log_mel(samples, n_mels), log_mel(shifted, n_mels)]).astype(np.float32)


@pytest.fixture(scope="module")
def opened(request, tiny_en_dir, dwkit_cache):
    """case -> (declaration, backend or None, why it cannot run here)."""
    loaded: dict[str, tuple] = {}

    def open_case(case: str):
        if case in loaded:
            return loaded[case]
        name = request.getfixturevalue("plugin") if case.startswith("plugin:") else case
        declared = runtimes.spec(name)
        device = "cuda" if declared.gpu_only else "cpu"
        reason = runtimes.unavailable_reason(name, device)
        model_dir = _model_dir(declared, tiny_en_dir, dwkit_cache) if reason is None else tiny_en_dir
        backend = None if reason else runtimes.load(model_dir, name, runtimes.RuntimeConfig(device=device))
        loaded[case] = (declared, backend, reason, model_dir)
        return loaded[case]

    yield open_case
    for _, backend, _, _ in loaded.values():
        if backend is not None:
            backend.close()


def _model_dir(declared, tiny_en_dir: Path, cache: Path) -> Path:
    if "hf" in declared.formats:
        return tiny_en_dir
    from dwkit.parity import converted_candidate

    fmt = declared.formats[0]
    precision = declared.parity_precision or declared.default_precision or declared.precisions[0]
    return converted_candidate(tiny_en_dir, fmt, precision, cache).path


def _usable(opened, case):
    declared, backend, reason, _ = opened(case)
    if backend is None:
        pytest.skip(f"{declared.name} cannot run here: {reason}")
    return declared, backend


def _prompt(info) -> list[int]:
    return [info.sot, info.no_timestamps]


GREEDY = DecodeOptions(without_timestamps=True, max_new_tokens=40)


@pytest.mark.parametrize("case", CASES)
def test_declaration_is_complete(opened, case):
    declared, _, _, _ = opened(case)
    assert declared.formats and declared.precisions and declared.devices
    assert set(declared.devices) <= {"cpu", "cuda"}
    for precision in (declared.default_precision, declared.bench_precision, declared.parity_precision):
        assert precision is None or precision in declared.accepted_precisions
    assert runtimes.spec(declared.name) is declared
    assert declared.name in [s.name for s in runtimes.runners_of(declared.formats[0])]


@pytest.mark.parametrize("case", CASES)
def test_shapes(opened, mels, case):
    declared, backend = _usable(opened, case)
    assert isinstance(backend, Backend) and backend.name == declared.name
    enc = backend.encode(mels)
    assert enc.batch_size == 2
    hyps = backend.generate(enc, [_prompt(backend.info)] * 2, GREEDY)
    assert len(hyps) == 2
    for hyp in hyps:
        assert hyp.tokens and all(0 <= t < backend.info.vocab_size for t in hyp.tokens)
        assert backend.info.eot not in hyp.tokens and hyp.avg_logprob <= 0
        assert 0 <= hyp.no_speech_prob <= 1


@pytest.mark.parametrize("case", CASES)
def test_batch_rows_are_independent_and_select_picks_rows(opened, mels, case):
    _, backend = _usable(opened, case)
    prompt = _prompt(backend.info)
    enc = backend.encode(mels)
    both = [h.tokens for h in backend.generate(enc, [prompt, prompt], GREEDY)]
    alone = [backend.generate(backend.encode(mels[i : i + 1]), [prompt], GREEDY)[0].tokens for i in range(2)]
    assert both == alone
    picked = backend.select(enc, [1])
    assert picked.batch_size == 1
    assert backend.generate(picked, [prompt], GREEDY)[0].tokens == both[1]


@pytest.mark.parametrize("case", CASES)
def test_detect_language(opened, mels, case):
    _, backend = _usable(opened, case)
    found = backend.detect_language(backend.encode(mels))
    assert len(found) == 2
    for probs in found:
        assert max(probs, key=probs.get) == "en" and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("case", CASES)
def test_beam_search_and_reorder(opened, mels, case):
    _, backend = _usable(opened, case)
    prompt = _prompt(backend.info)
    enc = backend.encode(mels)
    beams = backend.generate(
        enc, [prompt] * 2, DecodeOptions(without_timestamps=True, beam_size=2, max_new_tokens=40)
    )
    assert len(beams) == 2 and all(h.tokens for h in beams)
    if not isinstance(backend, StepBackend):
        return  # a native generate (CTranslate2) reorders inside its own beam search
    # Swapping the two rows of a cache must swap what the next step sees.
    tokens = np.array([prompt, prompt], dtype=np.int64)
    cache = backend.start(enc, np.array([0, 1]))
    first = backend.step(tokens, cache)[:, -1]
    cache = backend.reorder(cache, np.array([1, 0]))
    following = backend.step(np.array([[prompt[-1]], [prompt[-1]]], dtype=np.int64), cache)[:, -1]
    plain = backend.start(enc, np.array([1, 0]))
    backend.step(tokens, plain)
    expected = backend.step(np.array([[prompt[-1]], [prompt[-1]]], dtype=np.int64), plain)[:, -1]
    assert not np.allclose(first[0], first[1])
    np.testing.assert_allclose(following, expected, atol=1e-3)


@pytest.mark.parametrize("case", CASES)
def test_a_missing_library_is_one_clear_error(opened, monkeypatch, case):
    import importlib.util

    declared, _, reason, model_dir = opened(case)
    if reason is None and declared.requires:
        missing = declared.requires[0]
        real = importlib.util.find_spec
        monkeypatch.delitem(sys.modules, missing, raising=False)
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == missing else real(n, *a))
        reason = runtimes.unavailable_reason(declared.name)
        assert reason and f"dwkit[{declared.extra}]" in reason
    assert reason, f"{declared.name} declares no required module and runs here: nothing to refuse"
    device = "cuda" if declared.gpu_only else "cpu"
    if runtimes.machine_problem(declared.name, device) is not None:
        with pytest.raises(BackendUnavailable, match=declared.name):
            runtimes.load(model_dir, declared.name, runtimes.RuntimeConfig(device=device))
