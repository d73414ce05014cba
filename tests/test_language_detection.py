"""Language detection over several 30 s windows with a threshold (faster-whisper's
language_detection_segments / language_detection_threshold), through Backend.detect_language,
on the real multilingual base model in both long-form modes."""

from __future__ import annotations

import pytest

from dwkit.audio import load_audio
from dwkit.errors import ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.longform.prompt import choose_language
from dwkit.transcriber import Transcriber

EN, DE = {"en": 0.45, "de": 0.35, "fr": 0.2}, {"en": 0.3, "de": 0.4, "fr": 0.3}


def test_the_first_window_over_the_threshold_decides():
    assert choose_language([DE, {"fr": 0.9, "en": 0.1}, EN], threshold=0.5) == "fr"


def test_below_the_threshold_the_most_frequent_top_language_wins():
    assert choose_language([DE, EN, EN], threshold=0.5) == "en"
    assert choose_language([DE, EN], threshold=0.5) == "de"  # a tie: the first window's
    assert choose_language([EN], threshold=0.99) == "en"  # one window: its top language, as before
    with pytest.raises(ConfigError):
        choose_language([], threshold=0.5)


class Counting:
    """A real backend that counts the windows it is asked to detect the language of."""

    def __init__(self, backend):  # type: ignore[no-untyped-def]
        self._backend = backend
        self.windows = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._backend, name)

    def detect_language(self, enc):  # type: ignore[no-untyped-def]
        self.windows += enc.batch_size
        return self._backend.detect_language(enc)


def _run(loaded: Transcriber, audio, **options):  # type: ignore[no-untyped-def]
    backend = Counting(loaded.backend)
    transcriber = Transcriber(backend, loaded.tokenizer)  # type: ignore[arg-type]
    result = transcriber.transcribe_batch([audio], options=LongformOptions(**options))[0]
    return result, backend.windows


@pytest.fixture(scope="module")
def base_ct2_dir(base_dir, dwkit_cache):
    pytest.importorskip("ctranslate2")
    from dwkit.parity import converted_candidate

    return converted_candidate(base_dir, "ct2", "float32", dwkit_cache).path


@pytest.mark.parametrize("name", ["ct2", pytest.param("hf", marks=pytest.mark.slow)])
def test_sequential_detects_on_up_to_n_windows_and_stops_at_the_threshold(name, request, speech_long):
    model_dir = request.getfixturevalue("base_ct2_dir" if name == "ct2" else "base_dir")
    loaded = Transcriber.from_model_dir(model_dir, name)
    audio = load_audio(speech_long[0])  # 2.5 min: five windows to detect on
    clip = dict(clip_timestamps=(0.0, 3.0), language_detection_segments=3)  # decode 3 s only
    result, windows = _run(loaded, audio, language_detection_threshold=1.0, **clip)
    assert (result.language, windows) == ("en", 3)  # no probability exceeds 1: all three windows
    result, windows = _run(loaded, audio, language_detection_threshold=0.0, **clip)
    assert (result.language, windows) == ("en", 1)  # the first window passes: detection stops
    assert result.text.lower().strip().startswith("my sister planted")


def test_chunked_detects_once_per_recording_over_n_windows(base_ct2_dir, speech_long):
    loaded = Transcriber.from_model_dir(base_ct2_dir, "ct2")
    audio = load_audio(speech_long[0])[: 16000 * 45]  # three 25 s chunks, two 30 s windows
    opts = dict(mode="chunked", language_detection_segments=2, language_detection_threshold=1.0)
    result, windows = _run(loaded, audio, **opts)
    # the recording's first two windows, once (per chunk, as with one segment, it would be three)
    assert (result.language, windows) == ("en", 2)
    assert result.text.lower().strip().startswith("my sister planted")
