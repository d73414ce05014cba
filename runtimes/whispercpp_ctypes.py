"""The one ctypes surface onto whisper.cpp: the `libwhisper` that pywhispercpp bundles.

pywhispercpp's own bindings decode only whole files (`whisper_full`); its shared library
exposes the step API we need (`whisper_set_mel_with_state`, `whisper_encode_with_state`,
`whisper_decode_with_state`, `whisper_get_logits_from_state`). Everything here is declared
with argtypes/restype, and the by-value `whisper_context_params` struct is checked against
the loaded library before first use: a layout mismatch is a `BackendUnavailable`, never a
crash. The declarations follow whisper.cpp 1.8.5's whisper.h:

    struct whisper_context_params {        // sizeof 48 on x86-64
        bool use_gpu;                      //  0
        bool flash_attn;                   //  1
        int  gpu_device;                   //  4
        bool dtw_token_timestamps;         //  8
        enum whisper_alignment_heads_preset dtw_aheads_preset;  // 12
        int  dtw_n_top;                    // 16
        struct whisper_aheads { size_t n_heads; const whisper_ahead * heads; } dtw_aheads; // 24
        size_t dtw_mem_size;               // 40
    };

(checked against the disassembly of `whisper_context_default_params` in the bundled
1.8.5 build: it stores 1,1 at 0; 0 at 4; 0 at 8; 0 at 12; -1 at 16; 0 at 24 and 32;
128 MiB at 40.)

Word timestamps use whisper.cpp's own DTW, which runs only inside `whisper_full`: its
cross-attention weights are not in the public API. `WhisperState.dtw_token_times` therefore
runs `whisper_full_with_state` on the state's mel (`n_samples = 0` keeps the mel we set)
with a logits-filter callback that forces the tokens we decoded, on a context made with
`dtw_token_timestamps` and our alignment heads (`whisper_aheads`, custom preset), and reads
each token's `t_dtw`. That needs `whisper_full_params` (declared below after whisper.h 1.8.5,
passed by value; checked against `whisper_full_default_params_by_ref` at load like the
context params) and `whisper_token_data`.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dwkit.errors import BackendUnavailable, ModelError

# Without it a failed GGML_ASSERT launches gdb to print a backtrace and the process hangs.
os.environ.setdefault("GGML_NO_BACKTRACE", "1")

SUPPORTED_VERSIONS = ("1.8.",)  # the struct layout above; other versions are refused
LIBRARY_ENV = "DWKIT_LIBWHISPER"  # path to another libwhisper (same version family)
DTW_MEM_SIZE_DEFAULT = 128 * 1024 * 1024


class ContextParams(ctypes.Structure):
    _fields_ = [
        ("use_gpu", ctypes.c_bool),
        ("flash_attn", ctypes.c_bool),
        ("gpu_device", ctypes.c_int),
        ("dtw_token_timestamps", ctypes.c_bool),
        ("dtw_aheads_preset", ctypes.c_int),
        ("dtw_n_top", ctypes.c_int),
        ("dtw_aheads_n_heads", ctypes.c_size_t),
        ("dtw_aheads_heads", ctypes.c_void_p),
        ("dtw_mem_size", ctypes.c_size_t),
    ]


class VadParams(ctypes.Structure):
    _fields_ = [
        ("threshold", ctypes.c_float),
        ("min_speech_duration_ms", ctypes.c_int),
        ("min_silence_duration_ms", ctypes.c_int),
        ("max_speech_duration_s", ctypes.c_float),
        ("speech_pad_ms", ctypes.c_int),
        ("samples_overlap", ctypes.c_float),
    ]


class FullParams(ctypes.Structure):
    """whisper.h 1.8.5's `whisper_full_params`, field for field (callbacks as void pointers)."""

    _fields_ = [
        ("strategy", ctypes.c_int),
        ("n_threads", ctypes.c_int),
        ("n_max_text_ctx", ctypes.c_int),
        ("offset_ms", ctypes.c_int),
        ("duration_ms", ctypes.c_int),
        ("translate", ctypes.c_bool),
        ("no_context", ctypes.c_bool),
        ("no_timestamps", ctypes.c_bool),
        ("single_segment", ctypes.c_bool),
        ("print_special", ctypes.c_bool),
        ("print_progress", ctypes.c_bool),
        ("print_realtime", ctypes.c_bool),
        ("print_timestamps", ctypes.c_bool),
        ("token_timestamps", ctypes.c_bool),
        ("thold_pt", ctypes.c_float),
        ("thold_ptsum", ctypes.c_float),
        ("max_len", ctypes.c_int),
        ("split_on_word", ctypes.c_bool),
        ("max_tokens", ctypes.c_int),
        ("debug_mode", ctypes.c_bool),
        ("audio_ctx", ctypes.c_int),
        ("tdrz_enable", ctypes.c_bool),
        ("suppress_regex", ctypes.c_char_p),
        ("initial_prompt", ctypes.c_char_p),
        ("carry_initial_prompt", ctypes.c_bool),
        ("prompt_tokens", ctypes.c_void_p),
        ("prompt_n_tokens", ctypes.c_int),
        ("language", ctypes.c_char_p),
        ("detect_language", ctypes.c_bool),
        ("suppress_blank", ctypes.c_bool),
        ("suppress_nst", ctypes.c_bool),
        ("temperature", ctypes.c_float),
        ("max_initial_ts", ctypes.c_float),
        ("length_penalty", ctypes.c_float),
        ("temperature_inc", ctypes.c_float),
        ("entropy_thold", ctypes.c_float),
        ("logprob_thold", ctypes.c_float),
        ("no_speech_thold", ctypes.c_float),
        ("greedy_best_of", ctypes.c_int),
        ("beam_size", ctypes.c_int),
        ("beam_patience", ctypes.c_float),
        ("new_segment_callback", ctypes.c_void_p),
        ("new_segment_callback_user_data", ctypes.c_void_p),
        ("progress_callback", ctypes.c_void_p),
        ("progress_callback_user_data", ctypes.c_void_p),
        ("encoder_begin_callback", ctypes.c_void_p),
        ("encoder_begin_callback_user_data", ctypes.c_void_p),
        ("abort_callback", ctypes.c_void_p),
        ("abort_callback_user_data", ctypes.c_void_p),
        ("logits_filter_callback", ctypes.c_void_p),
        ("logits_filter_callback_user_data", ctypes.c_void_p),
        ("grammar_rules", ctypes.c_void_p),
        ("n_grammar_rules", ctypes.c_size_t),
        ("i_start_rule", ctypes.c_size_t),
        ("grammar_penalty", ctypes.c_float),
        ("vad", ctypes.c_bool),
        ("vad_model_path", ctypes.c_char_p),
        ("vad_params", VadParams),
    ]


class TokenData(ctypes.Structure):
    """whisper.h's `whisper_token_data`; `t_dtw` is the DTW time in centiseconds (-1: none)."""

    _fields_ = [
        ("id", ctypes.c_int32),
        ("tid", ctypes.c_int32),
        ("p", ctypes.c_float),
        ("plog", ctypes.c_float),
        ("pt", ctypes.c_float),
        ("ptsum", ctypes.c_float),
        ("t0", ctypes.c_int64),
        ("t1", ctypes.c_int64),
        ("t_dtw", ctypes.c_int64),
        ("vlen", ctypes.c_float),
    ]


class Ahead(ctypes.Structure):
    """whisper.h's `whisper_ahead`: one alignment head (decoder layer, head)."""

    _fields_ = [("n_text_layer", ctypes.c_int), ("n_head", ctypes.c_int)]


AHEADS_CUSTOM = 2  # enum whisper_alignment_heads_preset: NONE 0, N_TOP_MOST 1, CUSTOM 2, TINY_EN 3, ...
SAMPLING_GREEDY = 0
LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
LOGITS_FILTER_CALLBACK = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(TokenData),
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_float),
    ctypes.c_void_p,
)
_c_ctx, _c_state = ctypes.c_void_p, ctypes.c_void_p
_c_int, _c_float_p = ctypes.c_int, ctypes.POINTER(ctypes.c_float)

# name -> (restype, argtypes)
SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "whisper_version": (ctypes.c_char_p, []),
    "whisper_print_system_info": (ctypes.c_char_p, []),
    "whisper_log_set": (None, [LOG_CALLBACK, ctypes.c_void_p]),
    "whisper_context_default_params_by_ref": (ctypes.POINTER(ContextParams), []),
    "whisper_free_context_params": (None, [ctypes.POINTER(ContextParams)]),
    "whisper_init_from_file_with_params_no_state": (_c_ctx, [ctypes.c_char_p, ContextParams]),
    "whisper_init_state": (_c_state, [_c_ctx]),
    "whisper_free_state": (None, [_c_state]),
    "whisper_free": (None, [_c_ctx]),
    "whisper_set_mel_with_state": (_c_int, [_c_ctx, _c_state, _c_float_p, _c_int, _c_int]),
    "whisper_encode_with_state": (_c_int, [_c_ctx, _c_state, _c_int, _c_int]),
    "whisper_decode_with_state": (
        _c_int,
        [_c_ctx, _c_state, ctypes.POINTER(ctypes.c_int32), _c_int, _c_int, _c_int],
    ),
    "whisper_get_logits_from_state": (_c_float_p, [_c_state]),
    "whisper_n_vocab": (_c_int, [_c_ctx]),
    "whisper_n_text_ctx": (_c_int, [_c_ctx]),
    "whisper_n_audio_ctx": (_c_int, [_c_ctx]),
    "whisper_is_multilingual": (_c_int, [_c_ctx]),
    "whisper_model_n_mels": (_c_int, [_c_ctx]),
    "whisper_model_n_audio_state": (_c_int, [_c_ctx]),
    "whisper_model_n_audio_layer": (_c_int, [_c_ctx]),
    "whisper_model_n_text_layer": (_c_int, [_c_ctx]),
    "whisper_model_ftype": (_c_int, [_c_ctx]),
    "whisper_token_eot": (_c_int, [_c_ctx]),
    "whisper_token_sot": (_c_int, [_c_ctx]),
    "whisper_full_default_params_by_ref": (ctypes.POINTER(FullParams), [_c_int]),
    "whisper_free_params": (None, [ctypes.POINTER(FullParams)]),
    "whisper_full_with_state": (_c_int, [_c_ctx, _c_state, FullParams, _c_float_p, _c_int]),
    "whisper_full_n_segments_from_state": (_c_int, [_c_state]),
    "whisper_full_n_tokens_from_state": (_c_int, [_c_state, _c_int]),
    "whisper_full_get_token_data_from_state": (TokenData, [_c_state, _c_int, _c_int]),
}

# whisper_full settings of the forced DTW pass: one greedy segment without timestamps, and
# nothing that could reject, retry or skip it (the forced tokens have log-probability 0).
FORCED_DECODE: dict[str, object] = {
    "no_context": True,
    "no_timestamps": True,
    "single_segment": True,
    "print_progress": False,
    "print_timestamps": False,
    "print_realtime": False,
    "print_special": False,
    "token_timestamps": False,
    "suppress_blank": False,
    "suppress_nst": False,
    "temperature": 0.0,
    "temperature_inc": 0.0,
    "entropy_thold": 0.0,
    "logprob_thold": float("-inf"),
    "no_speech_thold": 1.0,
    "greedy_best_of": 1,
}

_lock = threading.Lock()
_library: WhisperLibrary | None = None
_log_messages: list[str] = []  # the last whisper.cpp log lines, for error messages


def candidate_paths() -> list[Path]:
    """libwhisper locations: $DWKIT_LIBWHISPER, then pywhispercpp's bundled copies.

    The auditwheel copy in `pywhispercpp.libs/` comes first: it is the one pywhispercpp's
    extension links, so both share one loaded library when used in the same process.
    """
    paths = []
    if os.environ.get(LIBRARY_ENV):
        paths.append(Path(os.environ[LIBRARY_ENV]))
    spec = importlib.util.find_spec("pywhispercpp")
    if spec and spec.origin:
        site = Path(spec.origin).resolve().parent.parent
        paths += sorted((site / "pywhispercpp.libs").glob("libwhisper*.so*"))
        paths += [site / "libwhisper.so.1", site / "libwhisper.so", site / "libwhisper.dylib"]
    return [p for p in paths if p.is_file()]


def library() -> WhisperLibrary:
    """The loaded, checked library (loaded once per process)."""
    global _library
    with _lock:
        if _library is None:
            paths = candidate_paths()
            if not paths:
                raise BackendUnavailable(
                    "whisper.cpp's libwhisper was not found: pip install 'dwkit[ggml]' "
                    f"(pywhispercpp==1.5.1), or set {LIBRARY_ENV} to a libwhisper 1.8 build"
                )
            _library = WhisperLibrary(paths[0])
        return _library


def recent_log(lines: int = 5) -> str:
    return " | ".join(m.strip() for m in _log_messages[-lines:] if m.strip())


@LOG_CALLBACK
def _log(level: int, text: bytes | None, user_data: object) -> None:
    # whisper.cpp logs every load in detail; keep the tail for error messages instead.
    if text:
        _log_messages.append(text.decode("utf-8", "replace"))
        del _log_messages[:-50]


class WhisperLibrary:
    """libwhisper with its functions declared and its struct layout verified."""

    def __init__(self, path: Path):
        try:
            self.lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise BackendUnavailable(f"{path}: could not be loaded ({exc})") from exc
        self.path = path
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError as exc:
                raise BackendUnavailable(f"{path}: lacks {name} (not whisper.cpp 1.8?)") from exc
            fn.restype, fn.argtypes = restype, argtypes
        self.version = (self.lib.whisper_version() or b"?").decode()
        self._check_layout()
        self.lib.whisper_log_set(_log, None)

    def _check_layout(self) -> None:
        if not self.version.startswith(SUPPORTED_VERSIONS):
            raise BackendUnavailable(
                f"{self.path}: whisper.cpp {self.version}; dwkit's ctypes layer is written for "
                "1.8.x: pip install pywhispercpp==1.5.1"
            )
        ptr = self.lib.whisper_context_default_params_by_ref()
        try:
            raw = ctypes.string_at(ptr, ctypes.sizeof(ContextParams))
            p = ptr.contents
            sane = (
                raw[0] in (0, 1)
                and raw[1] in (0, 1)
                # not the padding bytes after the two bools: C leaves them unspecified (malloc'd
                # garbage refused a good library at random), but the int that follows them
                and p.gpu_device == 0
                and p.dtw_token_timestamps in (False, True)
                and p.dtw_n_top == -1
                and p.dtw_aheads_n_heads == 0
                and not p.dtw_aheads_heads
                and p.dtw_mem_size == DTW_MEM_SIZE_DEFAULT
            )
        finally:
            self.lib.whisper_free_context_params(ptr)
        if not sane:
            raise BackendUnavailable(
                f"{self.path}: whisper_context_params does not have the layout of whisper.cpp "
                f"1.8.5 (library reports {self.version}); refusing to call it"
            )
        self.full_params_ok = self._full_params_layout()

    def _full_params_layout(self) -> bool:
        """Whether `whisper_full_default_params` reads as whisper.h 1.8.5 defines it (first,
        middle and last fields hold whisper.cpp's documented defaults). Only word timestamps
        call whisper_full, so a mismatch refuses those, not the backend."""
        ptr = self.lib.whisper_full_default_params_by_ref(SAMPLING_GREEDY)
        try:
            p = ptr.contents
            return (
                p.strategy == SAMPLING_GREEDY
                and p.n_max_text_ctx == 16384
                and p.language == b"en"
                and abs(p.entropy_thold - 2.4) < 1e-6
                and p.greedy_best_of == 5
                and p.beam_size == -1
                and p.grammar_penalty == 100.0
                and abs(p.vad_params.threshold - 0.5) < 1e-6
                and p.vad_params.speech_pad_ms == 30
            )
        finally:
            self.lib.whisper_free_params(ptr)

    def full_params(self) -> FullParams:
        """whisper.cpp's greedy defaults, as a struct we own."""
        if not self.full_params_ok:
            raise BackendUnavailable(
                f"{self.path}: whisper_full_params does not have the layout of whisper.cpp 1.8.5 "
                f"(library reports {self.version}); word timestamps need it: pip install pywhispercpp==1.5.1"
            )
        ptr = self.lib.whisper_full_default_params_by_ref(SAMPLING_GREEDY)
        try:
            return FullParams.from_buffer_copy(ptr.contents)
        finally:
            self.lib.whisper_free_params(ptr)

    def default_params(self) -> ContextParams:
        ptr = self.lib.whisper_context_default_params_by_ref()
        try:
            return ContextParams.from_buffer_copy(ptr.contents)
        finally:
            self.lib.whisper_free_context_params(ptr)

    def system_info(self) -> str:
        return (self.lib.whisper_print_system_info() or b"").decode()


class WhisperContext:
    """A loaded model (weights only; decoding state lives in `WhisperState`s)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        flash_attn: bool = True,
        use_gpu: bool = False,
        dtw_heads: Sequence[tuple[int, int]] | None = None,
    ):
        """`dtw_heads`: (decoder layer, head) pairs for whisper.cpp's DTW token timestamps;
        whisper.cpp turns DTW off under flash attention, so they need `flash_attn=False`."""
        self.lib = library()
        params = self.lib.default_params()
        params.flash_attn = bool(flash_attn)
        params.use_gpu = bool(use_gpu)
        self.flash_attn = bool(flash_attn)
        self.dtw_heads = tuple(dtw_heads or ())
        if self.dtw_heads:
            if flash_attn:
                raise ValueError("whisper.cpp computes no DTW timestamps under flash attention")
            # whisper.cpp keeps this pointer (not a copy) for the context's lifetime
            self._heads = (Ahead * len(self.dtw_heads))(
                *(Ahead(layer, head) for layer, head in self.dtw_heads)
            )
            params.dtw_token_timestamps = True
            params.dtw_aheads_preset = AHEADS_CUSTOM
            params.dtw_aheads_n_heads = len(self.dtw_heads)
            params.dtw_aheads_heads = ctypes.cast(self._heads, ctypes.c_void_p)
        ctx = self.lib.lib.whisper_init_from_file_with_params_no_state(str(path).encode(), params)
        if not ctx:
            raise ModelError(f"{path}: whisper.cpp could not load it ({recent_log()})")
        self._ctx: int | None = ctx
        self._states: weakref.WeakSet[WhisperState] = weakref.WeakSet()
        c, lib = ctx, self.lib.lib
        self.n_vocab = lib.whisper_n_vocab(c)
        self.n_text_ctx = lib.whisper_n_text_ctx(c)
        self.n_audio_ctx = lib.whisper_n_audio_ctx(c)
        self.n_mels = lib.whisper_model_n_mels(c)
        self.n_text_layer = lib.whisper_model_n_text_layer(c)
        self.n_audio_layer = lib.whisper_model_n_audio_layer(c)
        self.d_model = lib.whisper_model_n_audio_state(c)
        self.ftype = lib.whisper_model_ftype(c)
        self.multilingual = bool(lib.whisper_is_multilingual(c))
        self.eot = lib.whisper_token_eot(c)
        self.sot = lib.whisper_token_sot(c)

    @property
    def handle(self) -> int:
        if self._ctx is None:
            raise ModelError("whisper.cpp context already freed")
        return self._ctx

    def new_state(self) -> WhisperState:
        state = WhisperState(self)
        self._states.add(state)
        return state

    def close(self) -> None:
        """Free the model, after every state still alive (they use its weights)."""
        for state in list(self._states):
            state.close()
        if self._ctx is not None:
            self.lib.lib.whisper_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class WhisperState:
    """One decoding sequence: its mel, encoder output (cross-attention K/V) and self-attention cache.

    whisper.cpp fills logits only for the last token of each decode call.
    """

    def __init__(self, context: WhisperContext):
        self.context = context
        self.lib = context.lib.lib
        state = self.lib.whisper_init_state(context.handle)
        if not state:
            raise ModelError(f"whisper.cpp could not allocate a decoding state ({recent_log()})")
        self._state: int | None = state

    @property
    def handle(self) -> int:
        if self._state is None:
            raise ModelError("whisper.cpp state already freed")
        return self._state

    def set_mel(self, mel: np.ndarray) -> None:
        """mel float32 [n_mels, frames] into this state (whisper.cpp copies it)."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        n_mel, n_len = mel.shape
        ptr = mel.ctypes.data_as(_c_float_p)
        if self.lib.whisper_set_mel_with_state(self.context.handle, self.handle, ptr, n_len, n_mel):
            raise ModelError(f"whisper_set_mel rejected mel of shape {mel.shape} ({recent_log()})")

    def encode(self, mel: np.ndarray, threads: int) -> None:
        """mel float32 [n_mels, frames] -> encoder output and cross-attention K/V in this state."""
        self.set_mel(mel)
        if self.lib.whisper_encode_with_state(self.context.handle, self.handle, 0, threads):
            raise ModelError(f"whisper_encode failed ({recent_log()})")

    def decode(self, tokens: np.ndarray, n_past: int, threads: int) -> np.ndarray:
        """Feed `tokens` after the first `n_past` cached ones; logits of the last token [vocab].

        Cached positions from `n_past` on are dropped first, so any prefix can be kept.
        """
        ids = np.ascontiguousarray(tokens, dtype=np.int32)
        n = len(ids)
        if n == 0:
            raise ValueError("decode needs at least one token")
        if n_past + n > self.context.n_text_ctx:
            raise ModelError(f"{n_past + n} decoder positions exceed the model's {self.context.n_text_ctx}")
        ptr = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        if self.lib.whisper_decode_with_state(self.context.handle, self.handle, ptr, n, n_past, threads):
            raise ModelError(f"whisper_decode failed ({recent_log()})")
        logits = self.lib.whisper_get_logits_from_state(self.handle)
        vocab = self.context.n_vocab
        row = np.ctypeslib.as_array(logits, shape=(n * vocab,))[(n - 1) * vocab :]
        return row.copy()

    def dtw_token_times(
        self, text: list[int], language: str, mel_frames: int, threads: int
    ) -> tuple[list[int], list[int], list[float]]:
        """whisper.cpp's own DTW timestamps of `text` on the mel set in this state.

        `whisper_full` decodes greedily, with every step's logits replaced (logits-filter
        callback) so that the only choice is the next token of `text`, then end-of-text; it
        then teacher-forces the result once more with the context's alignment heads and runs
        its DTW over the first `mel_frames` mel frames (`duration_ms`). Returns (the tokens
        whisper.cpp produced, their `t_dtw` in 10 ms units, the probability the model gave
        each token over the text vocabulary, read before the forcing).
        """
        if not self.context.dtw_heads:
            raise ModelError("this whisper.cpp context was made without DTW alignment heads")
        params = self.context.lib.full_params()
        eot, vocab = self.context.eot, self.context.n_vocab
        forced = [*text, eot]
        probs: dict[int, float] = {}

        def force(ctx: int, state: int, tokens: object, n_tokens: int, logits: object, user: int) -> None:
            row = np.ctypeslib.as_array(logits, shape=(vocab,))
            i = min(int(n_tokens), len(text))
            if i < len(text):
                scores = row[:eot].astype(np.float64)
                scores = np.exp(scores - scores.max())
                probs[i] = float(scores[forced[i]] / scores.sum())
            row[:] = -np.inf
            row[forced[i]] = 0.0

        callback = LOGITS_FILTER_CALLBACK(force)  # referenced until whisper_full returns
        for name, value in FORCED_DECODE.items():
            setattr(params, name, value)
        params.n_threads = threads
        params.language = language.encode()
        params.duration_ms = mel_frames * 10
        params.logits_filter_callback = ctypes.cast(callback, ctypes.c_void_p)
        if self.lib.whisper_full_with_state(self.context.handle, self.handle, params, None, 0):
            raise ModelError(f"whisper_full failed on the DTW pass ({recent_log()})")
        tokens, times = [], []
        for segment in range(self.lib.whisper_full_n_segments_from_state(self.handle)):
            for k in range(self.lib.whisper_full_n_tokens_from_state(self.handle, segment)):
                data = self.lib.whisper_full_get_token_data_from_state(self.handle, segment, k)
                if data.id < eot:  # text tokens carry t_dtw; specials do not
                    tokens.append(int(data.id))
                    times.append(int(data.t_dtw))
        return tokens, times, [probs.get(i, float("nan")) for i in range(len(tokens))]

    def close(self) -> None:
        if self._state is not None:
            self.lib.whisper_free_state(self._state)
            self._state = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
