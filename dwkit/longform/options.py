"""Long-form options: distil-whisper's recommended defaults, every one overridable."""

from __future__ import annotations

from dataclasses import dataclass, field

from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError
from dwkit.schema import option, validate

MODES = ("sequential", "chunked")
TASKS = ("transcribe", "translate")


@dataclass
class LongformOptions:
    """How to transcribe a recording of any length.

    sequential: OpenAI's sliding 30 s window with timestamps, temperature fallback and
    no-speech skip, as transformers' long-form `generate` runs it. chunked: overlapping
    `chunk_length_s` chunks with `stride_length_s` on each side, batched, merged on the
    longest common token sequence, as transformers' ASR pipeline runs it.

    Both modes guard against lost speech by default (dwkit.longform.guard): a window or chunk
    that ends while speech follows its last timestamp is decoded on from there.
    `exact_transformers` turns that off and reproduces transformers' output exactly.
    `vad` transcribes only the speech Silero VAD finds (dwkit.longform.vad), in either mode;
    its `vad_*` fields are faster-whisper's VadOptions.

    Each field is declared once here (default, rule, help, flag spelling); the config's
    top-level keys and `[longform]` table, the `DWKIT_*` variables and the command line's
    flags are derived from these declarations (dwkit.schema).
    """

    mode: str = option("sequential", top=True, choices=MODES, help="long-form algorithm")
    language: str | None = option(
        None, top=True, language=True, help="language code or name; default: detect (multilingual models)"
    )
    task: str = option("transcribe", top=True, choices=TASKS, help="transcribe, or translate to English")
    temperatures: tuple[float, ...] = option(
        (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        minimum=0,
        nonempty=True,
        flag="--temperature",
        help="fallback temperatures, tried in order: a comma list (--temperature 0,0.2,0.4) or the "
        "flag repeated (--temperature 0 --temperature 0.2); the space-separated list of earlier versions "
        "is refused, as it swallowed the audio path",
    )
    compression_ratio_threshold: float | None = option(
        1.35, above=0, help="re-decode a window whose tokens compress better than this (repetition)"
    )
    logprob_threshold: float | None = option(-1.0, help="re-decode a window whose average log-prob is lower")
    no_speech_threshold: float | None = option(
        0.6, minimum=0, maximum=1, help="skip a window as silence above this no-speech probability"
    )
    condition_on_prev_tokens: bool = option(False, help="prompt each window with the text before it")
    chunk_length_s: float = option(
        25.0, above=0, maximum=30, flag="--chunk-length", help="chunked mode, seconds"
    )
    stride_length_s: float | None = option(
        None, minimum=0, flag="--stride-length", help="chunked mode, seconds each side (none: chunk / 6)"
    )
    batch_size: int = option(8, top=True, minimum=1, help="windows (or chunks) decoded together")
    return_timestamps: bool = option(
        True,
        flag="--timestamps",
        help="chunked mode: decode with timestamps (sequential always predicts them)",
    )
    exact_transformers: bool = option(
        False,
        help="reproduce transformers' output token for token: no lost-speech guard (a window or chunk "
        "that ends early with speech after it is then left short, as transformers leaves it)",
    )
    word_timestamps: bool = option(
        False,
        help="time every word (cross-attention of the alignment heads + DTW): JSON words, srt/vtt cut by words",
    )
    vad: bool = option(
        False,
        help="transcribe only the speech Silero VAD finds (needs dwkit[vad]); times stay the recording's",
    )
    vad_threshold: float = option(
        0.5, minimum=0, maximum=1, help="VAD: a 32 ms frame at or above this speech probability is speech"
    )
    vad_min_silence_duration_ms: int = option(
        2000, minimum=0, help="VAD: silence must last this long (ms) to end a speech region"
    )
    vad_min_speech_duration_ms: int = option(
        0, minimum=0, help="VAD: speech regions shorter than this (ms) go"
    )
    vad_speech_pad_ms: int = option(
        400, minimum=0, help="VAD: each speech region widens by this (ms) each side"
    )
    vad_max_speech_duration_s: float = option(
        30.0,
        above=0,
        help="VAD: longer speech regions are cut, at their last silence if any (regions are joined "
        "into pieces of at most one window, or one chunk in chunked mode, each transcribed alone)",
    )
    initial_prompt: str | None = option(
        None,
        help="text given as previous text before the first window (faster-whisper's initial_prompt); "
        "kept in the history with condition_on_prev_tokens; only its last n_text_ctx/2 - 1 tokens are used",
    )
    prefix: str | None = option(
        None,
        help="text forced as the start of the transcript (first window; chunked: first chunk of each file)",
    )
    hotwords: str | None = option(
        None, help="hint words given as previous text on every window that has no prefix (faster-whisper's)"
    )
    clip_timestamps: tuple[float, ...] | None = option(
        None,
        minimum=0,
        nonempty=True,
        help="sequential mode: transcribe only these start,end pairs of seconds (0,10.5,30,40; an odd "
        "count ends at the end of the audio); times stay on the original timeline",
    )
    language_detection_segments: int = option(
        1, minimum=1, help="multilingual models: detect the language on up to this many 30 s windows"
    )
    language_detection_threshold: float = option(
        0.5,
        minimum=0,
        maximum=1,
        help="stop detecting at the first window whose top language is more probable than this "
        "(else the language most often on top wins)",
    )
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def __post_init__(self) -> None:
        validate(self)
        if 2 * self.stride_s >= self.chunk_length_s:
            raise ConfigError("stride_length_s must be less than half of chunk_length_s")
        if self.vad and 2 * self.vad_speech_pad_ms >= 1000 * self.vad_max_speech_duration_s:
            raise ConfigError("vad_speech_pad_ms must be less than half of vad_max_speech_duration_s")
        if self.clip_timestamps is not None:
            if self.mode != "sequential":
                raise ConfigError(
                    "clip_timestamps works in sequential mode only (a chunk's times are the chunk's own); "
                    "use mode = sequential"
                )
            if self.vad:
                raise ConfigError(
                    "clip_timestamps and vad cannot be combined (both choose what is transcribed); "
                    "use one of them"
                )
            _check_clips(self.clip_timestamps)

    @property
    def stride_s(self) -> float:
        return self.chunk_length_s / 6 if self.stride_length_s is None else self.stride_length_s


def _check_clips(values: tuple[float, ...]) -> None:
    """Clips as faster-whisper reads them (start, end, start, ...), refused when they run backwards."""
    for i in range(1, len(values)):
        if values[i] < values[i - 1] or (i % 2 == 1 and values[i] == values[i - 1]):
            shown = ",".join(f"{v:g}" for v in values)
            raise ConfigError(
                f"clip_timestamps = {shown}: times must increase (start,end,start,end,...; each end after "
                f"its start, each start at or after the previous end), but {values[i]:g} follows {values[i - 1]:g}"
            )
