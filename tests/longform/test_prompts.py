"""Initial prompt, prefix, hotwords and clip timestamps on real tiny.en weights and espeak-ng speech:
transformers' `generate(prompt_ids=...)` reproduced token for token, faster-whisper's meaning
reproduced on the ct2 backend (same text as faster-whisper's own transcribe), the exact prompt
tokens the backends receive, and the bad inputs refused in one line."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

from dwkit.audio import load_audio
from dwkit.errors import ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.longform.prompt import hotword_tokens, initial_prompt_tokens, prefix_tokens
from dwkit.longform.sequential import clip_frames
from dwkit.schema import read_value, spec_of
from dwkit.tokenizer import Tokenizer
from dwkit.transcriber import Transcriber
from tests.hf_reference import generate_longform

# greedy, no fallback, no lost-speech guard: both sides deterministic and the same algorithm
EXACT = dict(
    temperatures=(0.0,),
    compression_ratio_threshold=None,
    logprob_threshold=None,
    no_speech_threshold=None,
    exact_transformers=True,
)
PROMPT = "Railway announcements: the coast train, platform nine."


class Recording:
    """A real backend that remembers every prompt it is asked to decode after."""

    def __init__(self, backend):  # type: ignore[no-untyped-def]
        self._backend = backend
        self.prompts: list[list[int]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._backend, name)

    def generate(self, enc, prompts, opts):  # type: ignore[no-untyped-def]
        self.prompts.extend(list(p) for p in prompts)
        return self._backend.generate(enc, prompts, opts)


def recording(transcriber: Transcriber) -> tuple[Transcriber, Recording]:
    backend = Recording(transcriber.backend)
    return Transcriber(backend, transcriber.tokenizer), backend  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ct2_tiny_dir(tiny_en_dir, dwkit_cache):
    pytest.importorskip("ctranslate2")
    from dwkit.parity import converted_candidate

    return converted_candidate(tiny_en_dir, "ct2", "float32", dwkit_cache).path


@pytest.fixture(scope="module")
def transcribers(tiny_en_dir, ct2_tiny_dir):
    return {
        "hf": Transcriber.from_model_dir(tiny_en_dir, "hf"),
        "ct2": Transcriber.from_model_dir(ct2_tiny_dir, "ct2"),
    }


@pytest.fixture(scope="module")
def tok(tiny_en_dir) -> Tokenizer:
    return Tokenizer.from_model_dir(tiny_en_dir)


@pytest.fixture(scope="module")
def two_windows(speech_long) -> np.ndarray:
    """32 s of speech: a long-form recording of two windows, so the prompt meets the history."""
    return load_audio(speech_long[0])[: 16000 * 32]


def _check_equals_transformers(transcriber, model_dir, audio, condition: bool) -> list[list[int]]:
    opts = LongformOptions(initial_prompt=PROMPT, condition_on_prev_tokens=condition, **EXACT)
    ours_t, backend = recording(transcriber)
    ours = ours_t.transcribe_batch([audio], options=opts)[0]
    text, segments = generate_longform(model_dir, audio, opts)
    assert [s.tokens for s in ours.segments] == [s.tokens for s in segments]
    assert ours.text == text
    return backend.prompts


def test_initial_prompt_with_conditioning_equals_transformers_prompt_ids(
    transcribers, tiny_en_dir, two_windows, tok
):
    prompts = _check_equals_transformers(transcribers["hf"], tiny_en_dir, two_windows, condition=True)
    info = tok.info
    assert prompts[0] == [info.sot_prev, *tok.text_tokens(PROMPT, "p"), info.sot]
    # the next window is conditioned on the prompt, then on the text after it
    assert len(prompts) >= 2 and prompts[1][: len(prompts[0]) - 1] == prompts[0][:-1]
    assert len(prompts[1]) > len(prompts[0])


@pytest.mark.slow
def test_initial_prompt_without_conditioning_equals_transformers_prompt_ids(
    transcribers, tiny_en_dir, two_windows, tok
):
    prompts = _check_equals_transformers(transcribers["hf"], tiny_en_dir, two_windows, condition=False)
    # transformers prompts every window with prompt_ids when it does not condition
    expected = [tok.info.sot_prev, *tok.text_tokens(PROMPT, "p"), tok.info.sot]
    assert len(prompts) >= 2 and all(p == expected for p in prompts)


def test_without_conditioning_the_prompt_serves_the_first_window_only(transcribers, two_windows, tok):
    """faster-whisper's rule (dwkit's default; exact_transformers follows transformers instead)."""
    transcriber, backend = recording(transcribers["ct2"])
    opts = dict(EXACT, exact_transformers=False)
    transcriber.transcribe_batch([two_windows], options=LongformOptions(initial_prompt=PROMPT, **opts))
    first = [tok.info.sot_prev, *tok.text_tokens(PROMPT, "p"), tok.info.sot]
    assert backend.prompts[0] == first
    assert len(backend.prompts) >= 2 and all(p == [tok.info.sot] for p in backend.prompts[1:])


@pytest.mark.parametrize("name", ["hf", "ct2"])
def test_prefix_is_forced_and_hotwords_take_the_previous_text_slot(transcribers, speech_short, tok, name):
    audio = load_audio(speech_short[0])
    info = tok.info
    transcriber, backend = recording(transcribers[name])
    forced = transcriber.transcribe_batch(
        [audio], options=LongformOptions(prefix="The tram", hotwords="Coast")
    )[0]
    # faster-whisper: <|0.00|> before the prefix in timestamp mode; no hotwords in a window with a prefix
    assert backend.prompts[0] == [info.sot, info.timestamp_begin, *tok.text_tokens("The tram", "p")]
    assert forced.text.startswith(" The tram to the coast") and forced.segments[0].start == 0.0
    backend.prompts.clear()
    transcriber.transcribe_batch([audio], options=LongformOptions(hotwords="Coast, platform"))
    assert backend.prompts[0] == [info.sot_prev, *tok.text_tokens("Coast, platform", "p"), info.sot]


def test_ct2_reproduces_faster_whisper_with_each_option(ct2_tiny_dir, transcribers, speech_short):
    faster_whisper = pytest.importorskip("faster_whisper")
    model = faster_whisper.WhisperModel(str(ct2_tiny_dir), device="cpu", compute_type="float32")
    audio = load_audio(speech_short[0])
    cases = [
        dict(initial_prompt="Railway announcements."),
        dict(prefix="The tram"),
        dict(hotwords="Coast, platform"),
        dict(clip_timestamps=(4.0,)),
    ]
    for case in cases:
        theirs, _ = model.transcribe(
            audio,
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            compression_ratio_threshold=None,
            log_prob_threshold=None,
            no_speech_threshold=None,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in case.items()},
        )
        ours = transcribers["ct2"].transcribe_batch([audio], options=LongformOptions(**EXACT, **case))[0]
        assert [s.text for s in ours.segments] == [s.text for s in theirs], case


def test_clip_timestamps_limit_the_transcript_to_the_clips(transcribers, speech_short):
    audio = load_audio(speech_short[0])  # sentence one ends near 3.4 s, sentence two starts near 4 s
    transcriber = transcribers["hf"]
    first = transcriber.transcribe_batch([audio], options=LongformOptions(clip_timestamps=(0.0, 3.5)))[0]
    second = transcriber.transcribe_batch([audio], options=LongformOptions(clip_timestamps=(4.0,)))[0]
    assert first.text.strip() == "The train to the coast leaves from the northern platform."
    assert all(s.end <= 3.5 for s in first.segments)
    assert second.text.strip() == "The old man sat on a wooden bench and watched the river."
    assert second.segments[0].start >= 4.0  # on the recording's own timeline


def test_an_over_long_initial_prompt_keeps_its_last_tokens(transcribers, speech_short, tok):
    words = " ".join(f"word{i}" for i in range(400))
    kept = initial_prompt_tokens(tok, words)
    assert kept == tok.text_tokens(words, "p")[-(tok.info.n_text_ctx // 2 - 1) :]
    transcriber, backend = recording(transcribers["ct2"])
    result = transcriber.transcribe_batch(
        [load_audio(speech_short[0])], options=LongformOptions(initial_prompt=words)
    )[0]
    assert backend.prompts[0] == [tok.info.sot_prev, *kept, tok.info.sot] and result.text.strip()


def test_over_long_prefix_or_hotwords_and_special_tokens_are_refused(tok):
    words = " ".join(f"word{i}" for i in range(400))
    with pytest.raises(ConfigError, match="prefix: .* tokens, but at most 223 fit"):
        prefix_tokens(tok, words, timestamps=True)
    with pytest.raises(ConfigError, match="hotwords: .* tokens, but at most 222 fit"):
        hotword_tokens(tok, words)
    with pytest.raises(ConfigError, match="special token <\\|endoftext\\|>"):
        initial_prompt_tokens(tok, "hello <|endoftext|>")


@pytest.mark.parametrize(
    "values, message",
    [
        ((10.0, 5.0), "5 follows 10"),
        ((3.0, 3.0), "3 follows 3"),
        ((0.0, 5.0, 4.0), "4 follows 5"),
    ],
)
def test_clips_out_of_order_are_refused(values, message):
    with pytest.raises(ConfigError, match=f"clip_timestamps = .*{message}"):
        LongformOptions(clip_timestamps=values)


def _read_clips(text: str):  # type: ignore[no-untyped-def]
    """The flag's text read as the CLI and DWKIT_LONGFORM__CLIP_TIMESTAMPS read it."""
    field = {f.name: f for f in dataclasses.fields(LongformOptions)}["clip_timestamps"]
    hint = typing.get_type_hints(LongformOptions)["clip_timestamps"]
    return read_value(text, hint, spec_of(field), "clip_timestamps", "--clip-timestamps", from_text=True)


def test_clip_text_malformed_or_in_chunked_mode_is_refused():
    assert _read_clips("0,10.5,30") == [0.0, 10.5, 30.0]
    with pytest.raises(ConfigError, match="expected a number"):
        _read_clips("0,ten")
    with pytest.raises(ConfigError, match="must be >= 0"):
        _read_clips("-1,4")
    with pytest.raises(ConfigError, match="sequential mode only"):
        LongformOptions(mode="chunked", clip_timestamps=(0.0, 5.0))
    with pytest.raises(ConfigError, match="clip_timestamps and vad cannot be combined"):
        LongformOptions(vad=True, clip_timestamps=(0.0, 5.0))


def test_clips_beyond_the_audio_are_refused_and_ends_cut_to_it():
    five_seconds = 5 * 16000
    assert clip_frames((1.0, 9.0), five_seconds) == [(100, 500)]
    assert clip_frames((1.0, 2.0, 3.0), five_seconds) == [(100, 200), (300, 500)]
    with pytest.raises(ConfigError, match="a clip starts at 6 s, but the audio ends at 5.00 s"):
        clip_frames((6.0,), five_seconds)


def test_cli_refuses_bad_clips_in_one_line(tiny_en_dir, speech_short, capsys):
    from dwkit.cli.main import entry as dwkit

    args = ["transcribe", str(speech_short[0]), "--model", str(tiny_en_dir)]
    assert dwkit([*args, "--clip-timestamps", "5,2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "5,2" in err and "2 follows 5" in err and "Traceback" not in err
