"""whisper.cpp backend: the model file run through pywhispercpp's bundled libwhisper (ctypes).

whisper.cpp keeps one sequence per `whisper_state`: its mel, its encoder output (as the
cross-attention K/V) and its self-attention cache. So the backend keeps, per audio row, a
small pool of states encoded from that row's mel, each remembering which tokens its cache
holds. A decoder row is just a token history; `step` picks the pool state whose cached
tokens share the longest prefix with the row's history and decodes only the difference
(whisper.cpp drops cached positions from `n_past` on). Greedy decoding therefore feeds one
token per call, and beam search needs no cache copies: a reordered beam re-decodes from
where it diverged, in the state that already holds the longest common prefix.

whisper.cpp returns logits for the last token of a decode call only. `step` therefore
splits its tokens into calls so that every row from the first `<|startoftranscript|>` on
(where the shared no-speech probability is read) is exact; rows before it (a previous-text
prefix, whose logits nobody reads) are NaN.

Word timestamps (`align`) are whisper.cpp's own: its cross-attention weights are not in its
public API, and it runs its DTW only inside `whisper_full`. So each window's mel goes to a
second context made with `dtw_token_timestamps` and our alignment heads (flash attention
off: whisper.cpp has no DTW under it, and the context loads the weights once more, on first
use), `whisper_full` is made to decode exactly our tokens (`WhisperState.dtw_token_times`),
and its per-token `t_dtw` become the DTW path. whisper.cpp's DTW is OpenAI's (normalise,
median filter 7, mean over heads, DTW over the window's frames) on the same rows [
<|notimestamps|>, text...]: `t_dtw` of text token j is where row j + 1 starts, so the path
is rebuilt as one point per row. Measured on tiny.en f16: the same jump frames as the onnx
fp32 backend with the shared DTW, token probabilities within 1e-3. Differences that remain:
the pass encodes the window again (whisper_full always encodes); multilingual models'
alignment prompt is whisper.cpp's sot + language + <|notimestamps|> (OpenAI's also carries
the task token); windows under 1 s are aligned over their first second (whisper_full
refuses shorter input); a window of more than n_text_ctx / 2 - 5 text tokens (220 for
Whisper) is refused, as whisper_full decodes no more in one window.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.constants import N_FRAMES
from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.manifest import contained_file, read_manifest
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, StepBackend, TokenAlignment, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec, missing_file_problems
from dwkit.runtimes.graph_steps import check_heads

PRECISIONS = ("f32", "f16", "q8_0", "q5_0", "q4_0")
MODEL_FILE = "ggml-model.bin"
FTYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 7: "q8_0", 8: "q5_0"}
MIN_DTW_MEL_FRAMES = 101  # whisper_full decodes nothing from less than one second (100 frames)


@dataclass
class _Slot:
    """One whisper_state and the tokens its self-attention cache holds."""

    state: Any  # WhisperState
    history: list[int] = field(default_factory=list)


@dataclass
class _Audio:
    """One audio row: its mel and the states encoded from it (grown on demand for beams)."""

    mel: np.ndarray  # float32 [n_mels, 3000]
    slots: list[_Slot] = field(default_factory=list)


@dataclass
class _Cache:
    audios: list[_Audio]  # per decoder row (rows may share an audio: beams)
    histories: list[list[int]]  # per decoder row: every token fed so far


class GgmlBackend(StepBackend):
    name = "ggml"

    def __init__(
        self,
        context: Any,
        info: ModelInfo,
        precision: str,
        threads: int,
        max_states: int | None,
        model_path: Path | None = None,
    ):
        self.context = context
        self.info = info
        self.precision = precision
        self.threads = threads
        self.flash_attn = context.flash_attn
        self.max_states = max_states  # per audio row; None = one per beam
        self.model_path = model_path  # what the DTW context of word timestamps loads
        self._dtw_context: Any = None  # word timestamps: whisper.cpp's DTW context and state
        self._dtw_aligner: Any = None

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> GgmlBackend:
        """Open a directory written by `dwconvert --to ggml`, or a whisper.cpp model file as
        whisper.cpp users hold it (`ggml-*.bin`, alone or in a directory; no dwkit.json).

        Options (RuntimeConfig.options): `flash_attn` (default True, whisper.cpp's own
        default; False gives ~1e-3 logits parity with transformers instead of ~3e-2) and
        `max_states` (whisper states per audio row for beam search; default one per beam).
        """
        from dwkit.runtimes.whispercpp_ctypes import WhisperContext

        model_dir = Path(model_dir)
        manifest = (read_manifest(model_dir) if model_dir.is_dir() else None) or {}
        if manifest.get("format") not in (None, "ggml"):
            raise ModelError(f"{model_dir}: is a {manifest['format']} model, not ggml")
        path = _model_file(model_dir, manifest)
        stored = manifest.get("precision")
        if config.precision and config.precision not in PRECISIONS:
            raise ConfigError(f"ggml precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if config.precision and stored and config.precision != stored:
            raise ConfigError(
                f"{model_dir} holds ggml {stored} weights; whisper.cpp cannot change precision at "
                f"load time: convert again with --precision {config.precision}"
            )
        if config.device != "cpu":
            raise BackendUnavailable(
                f"ggml on {config.device}: pywhispercpp's whisper.cpp build is CPU-only; use device cpu"
            )
        options = BACKEND.parse_options(config.options)
        info = ModelInfo.from_model_dir(model_dir)
        context = WhisperContext(path, flash_attn=options.get("flash_attn", True))
        precision = FTYPE_NAMES.get(context.ftype % 1000, str(context.ftype))
        if config.precision and config.precision != precision:  # a file without a manifest
            context.close()
            raise ConfigError(
                f"{path} holds ggml {precision} weights; whisper.cpp cannot change precision at load "
                f"time: drop --precision or use a {config.precision} file"
            )
        if precision == "f32":
            context.close()
            raise BackendUnavailable(
                f"{path}: an all-f32 file; whisper.cpp {context.lib.version}'s CPU convolution "
                "needs f16 kernels and aborts the process on it. Convert with --precision f16 "
                "(or run the file with a whisper.cpp build that accepts f32 convolutions)"
            )
        if (context.n_vocab, context.n_mels) != (info.vocab_size, info.n_mels):
            context.close()
            raise ModelError(
                f"{path}: vocab {context.n_vocab} / {context.n_mels} mels do not match the "
                f"manifest's {info.vocab_size} / {info.n_mels}; convert the model again"
            )
        threads = config.threads or min(4, os.cpu_count() or 1)
        max_states = options.get("max_states")
        return cls(context, info, precision, threads, max_states or None, path)

    # --- encoder -------------------------------------------------------------------------

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        check_mel(mel, self.info)
        audios = []
        for row in np.asarray(mel, dtype=np.float32):
            audio = _Audio(np.ascontiguousarray(row))
            self._new_slot(audio)
            audios.append(audio)
        return EncoderOutput(data=audios, batch_size=len(audios))

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        return EncoderOutput(data=[enc.data[i] for i in rows], batch_size=len(rows))

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        raise NotImplementedError(
            "whisper.cpp keeps the encoder output inside its state (as cross-attention K/V) and "
            "exposes no API to read it; compare ggml at the logits and token levels"
        )

    def _new_slot(self, audio: _Audio) -> _Slot:
        slot = _Slot(self.context.new_state())
        slot.state.encode(audio.mel, self.threads)
        audio.slots.append(slot)
        return slot

    # --- decoder -------------------------------------------------------------------------

    def start(self, enc: EncoderOutput, batch_index: np.ndarray) -> _Cache:
        audios = [enc.data[int(i)] for i in batch_index]
        return _Cache(audios, [[] for _ in audios])

    def step(self, tokens: np.ndarray, cache: _Cache) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        batch, new = tokens.shape
        out = np.full((batch, new, self.info.vocab_size), np.nan, dtype=np.float32)
        used: set[int] = set()
        for b in range(batch):
            row = [int(t) for t in tokens[b]]
            sot = row.index(self.info.sot) if self.info.sot in row else 0
            target = cache.histories[b] + row
            first_exact = len(cache.histories[b]) + sot
            slot, common = self._slot_for(cache.audios[b], target, used)
            common = min(common, first_exact)
            # One decode call per exact row (the last row of a call is the only one filled).
            ends = range(first_exact, len(target))
            for end in ends:
                logits = slot.state.decode(np.array(target[common : end + 1]), common, self.threads)
                out[b, end - len(cache.histories[b])] = logits
                common = end + 1
            slot.history = target
            cache.histories[b] = target
        return out

    def _slot_for(self, audio: _Audio, target: list[int], used: set[int]) -> tuple[_Slot, int]:
        """The state holding the longest prefix of `target` that no other row used this step."""
        free = [s for s in audio.slots if id(s) not in used]
        if not free and (self.max_states is None or len(audio.slots) < self.max_states):
            free = [self._new_slot(audio)]
        if not free:  # capped pool: share a state and re-decode (correct, slower)
            free = audio.slots
        best = max(free, key=lambda s: _common_prefix(s.history, target))
        used.add(id(best))
        return best, _common_prefix(best.history, target)

    def reorder(self, cache: _Cache, index: np.ndarray) -> _Cache:
        rows = [int(i) for i in index]
        return _Cache([cache.audios[i] for i in rows], [list(cache.histories[i]) for i in rows])

    # --- word timestamps ---------------------------------------------------------------

    def align(
        self,
        enc: EncoderOutput,
        prompts: list[list[int]],
        texts: list[list[int]],
        num_frames: list[int],
        heads: list[tuple[int, int]],
    ) -> list[TokenAlignment]:
        """The Aligner contract from whisper.cpp's own DTW (see the module docstring)."""
        check_heads(self.info, heads)
        limit = self.info.n_text_ctx // 2 - 5
        out = []
        for row, (prompt, text, frames) in enumerate(zip(prompts, texts, num_frames)):
            if not text:  # the path of <|notimestamps|> alone, as the shared DTW gives it
                out.append(TokenAlignment(np.zeros(1, np.int64), np.zeros(1, np.int64), []))
                continue
            if len(text) > limit:
                raise ModelError(
                    f"ggml word timestamps: a window of {len(text)} text tokens; whisper.cpp's DTW pass "
                    f"(whisper_full) decodes at most {limit} per window"
                )
            state = self._dtw_state(heads)
            state.set_mel(enc.data[row].mel)
            frames = max(MIN_DTW_MEL_FRAMES, min(int(frames), N_FRAMES))
            tokens, times, probs = state.dtw_token_times(
                list(text), self._language(prompt), frames, self.threads
            )
            if tokens != list(text) or min(times) < 0:
                raise ModelError(
                    "ggml word timestamps: whisper.cpp's DTW pass did not reproduce the decoded tokens "
                    f"({len(tokens)} of {len(text)} came back); no word times for this window"
                )
            time_indices = np.array([0, *(t // 2 for t in times)], dtype=np.int64)  # 10 ms -> 20 ms frames
            out.append(TokenAlignment(np.arange(len(text) + 1, dtype=np.int64), time_indices, probs))
        return out

    def _dtw_state(self, heads: list[tuple[int, int]]) -> Any:
        """The state whisper.cpp's DTW runs in, in a context made for these heads on first use
        (whisper_full resets a state on each call, so every window reuses it)."""
        from dwkit.runtimes.whispercpp_ctypes import WhisperContext

        wanted = tuple((int(layer), int(head)) for layer, head in heads)
        if self._dtw_context is None or self._dtw_context.dtw_heads != wanted:
            if self._dtw_context is not None:
                self._dtw_context.close()
            if self.model_path is None:
                raise ModelError("ggml word timestamps need the backend opened with from_model_dir")
            self._dtw_context = WhisperContext(self.model_path, flash_attn=False, dtw_heads=wanted)
            self._dtw_aligner = self._dtw_context.new_state()
        return self._dtw_aligner

    def _language(self, prompt: list[int]) -> str:
        """The language code of a multilingual prompt (whisper.cpp puts it in its DTW prompt)."""
        if not self.info.multilingual:
            return "en"
        codes = {token_id: token[2:-2] for token, token_id in self.info.lang_to_id.items()}
        found = [codes[t] for t in prompt if t in codes]
        if not found:
            raise ModelError(
                "ggml word timestamps: the prompt names no language (whisper.cpp's DTW pass needs one)"
            )
        return found[0]

    def close(self) -> None:
        """Free the whisper.cpp contexts now (states go with their encoder outputs)."""
        if self._dtw_context is not None:
            self._dtw_context.close()
        self.context.close()


def _model_file(model_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """The file the manifest names, else the whisper.cpp file `model_dir` is or holds."""
    if manifest:
        path = contained_file(model_dir, manifest.get("model_file", MODEL_FILE), "model_file")
        if not path.is_file():
            raise ModelError(f"{path}: missing (convert with: dwconvert MODEL OUT --to ggml)")
        return path
    from dwkit.foreign import ggml_file

    found = ggml_file(model_dir)
    if found is None:
        raise ModelError(
            f"{model_dir}: no whisper.cpp model file (ggml-*.bin) there; convert with: dwconvert MODEL OUT --to ggml"
        )
    return found


def _is_ggml(path: Path) -> bool:
    """A whisper.cpp model file, or a directory holding one (no dwkit.json)."""
    from dwkit.foreign import ggml_file

    return ggml_file(path) is not None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# --- declaration ---------------------------------------------------------------------------


def _probe(device: str) -> str | None:
    from dwkit.runtimes.whispercpp_ctypes import library

    try:
        library()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def _weight_problems(model_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    if not manifest:  # a whisper.cpp file as whisper.cpp users hold it: found by its magic
        from dwkit.foreign import ggml_file

        if ggml_file(model_dir) is not None:
            return []
    return missing_file_problems(model_dir, str(manifest.get("model_file") or MODEL_FILE))


BACKEND = BackendSpec(
    name="ggml",
    summary="whisper.cpp through pywhispercpp's libwhisper (CPU)",
    backend_class=GgmlBackend,
    formats=("ggml",),
    extra="ggml",
    precisions=PRECISIONS,
    fixed_precision=True,
    devices=("cpu",),
    probe=_probe,
    requires=("pywhispercpp",),
    options=(
        BackendOption("flash_attn", bool, "whisper.cpp's flash attention (default on; off: tighter parity)"),
        BackendOption(
            "max_states", int, "whisper states per audio row for beam search (default: one per beam)"
        ),
    ),
    weight_files=("*.bin",),
    file_problems=_weight_problems,
    recognise=_is_ggml,
    recognise_rank=10,
    bench_precision="q8_0",
    parity_precision="f16",  # whisper.cpp 1.8.5 cannot run f32 files
)
