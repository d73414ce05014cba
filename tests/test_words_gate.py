"""The parity gate's word level: on when the parity runs time words, same words and times
within tolerance against the hf baseline, thresholds from the packaged [words] section."""

from __future__ import annotations

import pytest

from dwkit.parity import AudioSet, ParityConfig, run_parity
from dwkit.parity.measures import word_agreement
from dwkit.parity.results import Check
from dwkit.results import Word


def _words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(start, end, text, 1.0) for text, start, end in spec]


def test_word_agreement_matches_text_in_order_and_counts_times_within_tolerance():
    ref = _words((" The", 0.0, 0.3), (" old", 0.3, 0.6), (" man", 0.6, 1.0), (" sat.", 1.0, 1.4))
    cand = _words((" The", 0.02, 0.3), (" old", 0.3, 0.82), (" sat.", 1.0, 1.4))
    agreement = word_agreement([ref], [cand], tolerance_s=0.1)
    assert agreement["words"] == 4 and agreement["words_matched"] == 3
    assert agreement["match_rate"] == 0.75
    assert agreement["time_share"] == pytest.approx(2 / 3)  # " old" ends 0.22 s late
    assert agreement["time_max_abs"] == pytest.approx(0.22)
    assert word_agreement([[]], [[]], 0.1)["match_rate"] == 1.0


def test_word_thresholds_per_table_with_default():
    config = ParityConfig.load()
    assert config.words("fp32") == (0.1, {"word_match_min": 1.0, "word_time_share_min": 0.95})
    tolerance, limits = config.words("int8")
    assert tolerance == 0.1 and limits["word_match_min"] < 1.0
    assert not Check("word_time_share_min", 0.9, limits["word_time_share_min"] + 0.01).passed


@pytest.fixture
def words_on(tmp_path) -> ParityConfig:
    path = tmp_path / "words.toml"
    path.write_text("[longform]\nword_timestamps = true\n")
    return ParityConfig.load(path)


def test_gate_has_a_word_case_per_mode_only_with_word_timestamps_on(tiny_en_dir, words_on):
    from dwkit.parity import ParityGate

    audio = AudioSet([], [])
    cases = ParityGate(tiny_en_dir, audio, modes=("short", "chunked"), config=words_on).cases()
    assert [c for c in cases if c[0] == "words"] == [("words", "short"), ("words", "chunked")]
    assert not [c for c in ParityGate(tiny_en_dir, audio).cases() if c[0] == "words"]


@pytest.mark.slow
def test_gate_word_level_passes_ct2_float32(tiny_en_dir, dwkit_cache, speech_short, words_on):
    pytest.importorskip("ctranslate2")
    from tests.converters.test_ct2 import converted

    ct2_dir = converted(tiny_en_dir, "float32", dwkit_cache, validate=True)
    audio = AudioSet.from_files([speech_short[0]])
    report = run_parity(tiny_en_dir, [f"ct2:{ct2_dir}"], audio=audio, modes=("short",), config=words_on)
    words = [r for r in report.results if r.level == "words"]
    assert [r.mode for r in words] == ["short"]
    assert words[0].passed, words[0].summary()
    assert words[0].details["words_matched"] == words[0].details["words"] > 10
    assert words[0].details["time_share"] == 1.0  # CTranslate2's DTW and the shared one agree
    assert "words" in report.table()
