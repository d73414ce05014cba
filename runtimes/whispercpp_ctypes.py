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
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
import weakref
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


LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
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

    def __init__(self, path: str | os.PathLike[str], flash_attn: bool = True, use_gpu: bool = False):
        self.lib = library()
        params = self.lib.default_params()
        params.flash_attn = bool(flash_attn)
        params.use_gpu = bool(use_gpu)
        self.flash_attn = bool(flash_attn)
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

    def encode(self, mel: np.ndarray, threads: int) -> None:
        """mel float32 [n_mels, frames] -> encoder output and cross-attention K/V in this state."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        n_mel, n_len = mel.shape
        ptr = mel.ctypes.data_as(_c_float_p)
        if self.lib.whisper_set_mel_with_state(self.context.handle, self.handle, ptr, n_len, n_mel):
            raise ModelError(f"whisper_set_mel rejected mel of shape {mel.shape} ({recent_log()})")
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

    def close(self) -> None:
        if self._state is not None:
            self.lib.whisper_free_state(self._state)
            self._state = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
