"""CTranslate2 backend: encode and generate with `ctranslate2.models.Whisper`, the engine of
faster-whisper.

CTranslate2 has a native `generate` that applies Whisper's rules itself (suppress tokens,
suppress blank, the timestamp rules, the no-speech probability), so `DecodeOptions` are
mapped onto it rather than decoded step by step. Everything around it (features, prompts,
fallback, segments, merging) is the shared engine's. The mapping, checked against
faster-whisper's own calls and CTranslate2's `whisper.cc` / `decoding.cc`:

- Timestamp mode is read by CTranslate2 from the prompt (its rules run unless the special
  tokens end with <|notimestamps|>), so a prompt must agree with `without_timestamps`.
- Tokens after that special run are a prefix CTranslate2 forces: they come back first in
  `sequences_ids` (stripped here, as the shared decoders exclude the prompt), count as decoding
  steps for `max_length`, and stay out of the score.
- `max_length` counts the prompt: CTranslate2 decodes at most
  min(max_length // 2, max_length - (prompt length - 1)) new tokens (end-of-text included),
  so a budget of B new tokens is max_length = max(2B, B + prompt length - 1).
- Scores are sums of log-softmax over the processed logits (end-of-text included) divided
  by len(tokens) ** length_penalty; greedy and sampling pass length_penalty=0 so the score
  is the raw sum, exactly the shared decoders' `sum_logprob`.
- Greedy is `beam_size=1, sampling_topk=1`; sampling is `sampling_topk=0` (the whole
  distribution) at the temperature. `seed` goes to `ctranslate2.set_random_seed`, but
  CTranslate2 4.x seeds each worker thread's generator once, at its first sample: a seed
  makes a freshly loaded model's samples reproducible run to run, it does not replay them
  call by call (the shared step decoders, with their own generator, do).

Known differences from the shared rules (both rare, both only in timestamp mode or beam
search): CTranslate2's timestamp rule lets a segment end at its own start time (the shared
rules, like transformers, forbid zero-length segments), and its beam search normalises by
len ** length_penalty (the shared beam search by length + 1, or GNMT's ((5 + len) / 6) ** lp).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.decoding.options import DecodeOptions, Hypothesis
from dwkit.decoding.rules import log_softmax, sample_begin
from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput, RuntimeConfig, TokenAlignment, check_mel
from dwkit.runtimes.declaration import BackendOption, BackendSpec, missing_file_problems

# CTranslate2's compute types; which ones run depends on the device and the build
# (`ctranslate2.get_supported_compute_types`): CPU builds offer float32, int8, int8_float32
# (and int16 on some CPUs); float16/bfloat16 need a CUDA GPU.
PRECISIONS = (
    "float32",
    "float16",
    "bfloat16",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
)
# Not compute types but accepted: "default" keeps the type the model was converted to (falling
# back to the nearest supported one, e.g. float16 weights run as float32 on CPU), "auto" picks
# the fastest supported type.
ALIASES = ("default", "auto")
MODEL_FILE = "model.bin"


@dataclass(frozen=True)
class _PromptShape:
    """How CTranslate2 splits a prompt: tokens before <|startoftranscript|>, the special run."""

    sot_index: int
    special_end: int  # index after <|startoftranscript|> and the task/language/notimestamps tokens
    length: int
    no_timestamps: bool  # the special run ends with <|notimestamps|>: no timestamp rules

    @property
    def prefix(self) -> int:
        """Tokens after the special run: a prefix CTranslate2 forces, then returns with the result."""
        return self.length - self.special_end


class CT2Backend:
    name = "ct2"

    def __init__(self, model: Any, info: ModelInfo, device: str, compute_type: str):
        self.model = model
        self.info = info
        self.device = device
        self.compute_type = compute_type
        self.model_dir: Path | None = None  # set by from_model_dir; the aligner twin reloads from it
        self._load_options: dict[str, Any] = {}
        self._aligner: Any = None

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: RuntimeConfig) -> CT2Backend:
        import ctranslate2

        model_dir = Path(model_dir)
        if not (model_dir / MODEL_FILE).is_file():
            raise ModelError(f"{model_dir}: no {MODEL_FILE} (not a CTranslate2 model directory)")
        # dwkit.json's facts, or a faster-whisper directory's own files (config.json, tokenizer.json).
        info = ModelInfo.from_model_dir(model_dir)
        device, index = _parse_device(config.device)
        compute_type = config.precision or "default"
        _check_compute_type(compute_type, device)
        try:
            model = ctranslate2.models.Whisper(
                str(model_dir),
                device=device,
                device_index=index,
                compute_type=compute_type,
                intra_threads=config.threads,
                inter_threads=config.inter_threads,
                **config.options,
            )
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModelError(f"{model_dir}: CTranslate2 could not load it ({_one_line(exc)})") from exc
        if model.n_mels != info.n_mels:
            raise ModelError(
                f"{model_dir}: model.bin expects {model.n_mels} mel bins but its manifest or "
                f"preprocessor_config.json says {info.n_mels}; the directory mixes two models (reconvert it)"
            )
        backend = cls(model, info, device, compute_type)
        backend.model_dir = model_dir
        backend._load_options = dict(
            device=device, device_index=index, compute_type=compute_type, intra_threads=config.threads
        )
        return backend

    def close(self) -> None:
        """Free the weights now rather than when the garbage collector finds the model."""
        self.model.unload_model()

    # -- encoder -------------------------------------------------------------------------

    def encode(self, mel: np.ndarray) -> EncoderOutput:
        import ctranslate2

        check_mel(mel, self.info)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))
        # to_cpu=False: the states stay on the model's device for generate (faster-whisper does so
        # too; it copies to the CPU only when one model spans several GPUs).
        return EncoderOutput(data=self.model.encode(features, to_cpu=False), batch_size=mel.shape[0])

    def select(self, enc: EncoderOutput, rows: list[int]) -> EncoderOutput:
        if list(rows) == list(range(enc.batch_size)):
            return enc
        import ctranslate2

        states = _to_numpy(enc.data)[np.asarray(rows, dtype=np.int64)]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(states))
        if enc.data.dtype != view.dtype:  # float16/bfloat16 states on a GPU
            view = view.to(enc.data.dtype)
        if self.device != "cpu":
            view = view.to_device(ctranslate2.Device.cuda)
        return EncoderOutput(data=view, batch_size=len(rows))

    def encoder_array(self, enc: EncoderOutput) -> np.ndarray:
        return _to_numpy(enc.data)

    def encoder_states_from_array(self, array: np.ndarray) -> EncoderOutput:
        """Another backend's encoder states (an encoder/decoder pair): generate, detect_language
        and align take encoded features [batch, frames, d_model] as well as a mel. On the CPU the
        StorageView shares the array's buffer (it holds a reference to it)."""
        import ctranslate2

        states = np.ascontiguousarray(array, dtype=np.float32)
        view = ctranslate2.StorageView.from_array(states)
        if self.device != "cpu":
            view = view.to_device(ctranslate2.Device.cuda)
            loaded = str(self.model.compute_type)  # what "default"/"auto" resolved to
            if loaded.endswith("float16"):  # float16, int8_float16, bfloat16, int8_bfloat16
                view = view.to(
                    ctranslate2.DataType.bfloat16 if "bfloat16" in loaded else ctranslate2.DataType.float16
                )
        return EncoderOutput(data=view, batch_size=int(states.shape[0]))

    # -- decoder -------------------------------------------------------------------------

    def generate(self, enc: EncoderOutput, prompts: list[list[int]], opts: DecodeOptions) -> list[Hypothesis]:
        """One hypothesis per prompt; prompts CTranslate2 cannot batch together run in groups."""
        self._check_batch(enc, prompts)
        results: list[Hypothesis | None] = [None] * len(prompts)
        for shape, rows in self._groups(prompts).items():
            if shape.no_timestamps != opts.without_timestamps:
                raise ConfigError(
                    "ct2 applies the timestamp rules exactly when the prompt does not end with "
                    f"<|notimestamps|>; without_timestamps={opts.without_timestamps} disagrees with "
                    f"prompt {prompts[rows[0]]}"
                )
            sub = self.select(enc, rows)
            hyps = self._generate_group(sub, [prompts[i] for i in rows], shape, opts)
            for i, hyp in zip(rows, hyps):
                results[i] = hyp
        return [h for h in results if h is not None]

    def _generate_group(
        self, enc: EncoderOutput, prompts: list[list[int]], shape: _PromptShape, opts: DecodeOptions
    ) -> list[Hypothesis]:
        import ctranslate2

        info = self.info
        budget = self._budget(shape, opts.max_new_tokens)
        forced = budget + shape.prefix  # CTranslate2 counts the forced prefix as decoded steps
        sampling = opts.temperature > 0
        beam = 1 if sampling else max(1, opts.beam_size)
        # Greedy and sampling: length_penalty=0 makes CTranslate2's score the raw sum of
        # log-probabilities; beam search ranks with it, so it keeps the requested one
        # (None, the shared beam search's plain length normalisation, is ct2's 1).
        length_penalty = 0.0 if beam == 1 else (1.0 if opts.length_penalty is None else opts.length_penalty)
        if sampling and opts.seed is not None:
            ctranslate2.set_random_seed(opts.seed)
        suppress = info.suppress_tokens if opts.suppress_tokens is None else opts.suppress_tokens
        max_initial = (
            info.max_initial_timestamp_index
            if opts.max_initial_timestamp_index is None
            else opts.max_initial_timestamp_index
        )
        results = self.model.generate(
            enc.data,
            prompts,
            beam_size=beam,
            patience=opts.patience,
            num_hypotheses=1,
            length_penalty=length_penalty,
            max_length=_ct2_max_length(forced, shape),
            return_scores=True,
            return_no_speech_prob=opts.no_speech_detection,
            max_initial_timestamp_index=max_initial,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=list(suppress),
            sampling_topk=0 if sampling else 1,
            sampling_temperature=opts.temperature if sampling else 1.0,
        )
        hyps = []
        for row, result in enumerate(results):
            # the prefix comes back first; its score does not count (a forced token is not decoded)
            tokens = [int(t) for t in result.sequences_ids[0]][shape.prefix :]
            # End-of-text is never returned; a hypothesis that used the whole budget stopped there.
            finished = len(tokens) < budget
            score = float(result.scores[0])
            if length_penalty == 0:
                sum_logprob = score
            elif tokens:
                sum_logprob = score * len(tokens) ** length_penalty
            else:  # an immediate end-of-text: the normalised score divided by 0 ** lp
                sum_logprob = self._first_eot_logprob(enc, row, prompts[row], shape, opts)
            length = len(tokens) + int(finished)
            hyps.append(
                Hypothesis(
                    tokens=tokens,
                    sum_logprob=sum_logprob,
                    avg_logprob=sum_logprob / max(length, 1),
                    no_speech_prob=float(result.no_speech_prob) if opts.no_speech_detection else None,
                    temperature=opts.temperature,
                    finished=finished,
                )
            )
        return hyps

    def _first_eot_logprob(
        self, enc: EncoderOutput, row: int, prompt: list[int], shape: _PromptShape, opts: DecodeOptions
    ) -> float:
        """log P(end-of-text) at the first step under the same rules (beam search's empty result)."""
        sub = self.select(enc, [row])
        suppress = self.info.suppress_tokens if opts.suppress_tokens is None else opts.suppress_tokens
        max_initial = opts.max_initial_timestamp_index
        result = self.model.generate(
            sub.data,
            [prompt],
            beam_size=1,
            max_length=_ct2_max_length(1, shape),
            return_logits_vocab=True,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=list(suppress),
            max_initial_timestamp_index=(
                self.info.max_initial_timestamp_index if max_initial is None else max_initial
            ),
        )[0]
        logits = _to_numpy(result.logits[0][0])[None]
        return float(log_softmax(logits)[0, self.info.eot])

    def next_token_logits(self, enc: EncoderOutput, prompts: list[list[int]]) -> np.ndarray:
        """Raw logits [batch, vocab] after each prompt, from `generate(..., return_logits_vocab=True)`.

        CTranslate2 exposes no decoder step, only the logits its generate saw; with nothing
        suppressed those are raw, except that its timestamp rules always run in timestamp
        mode. So this needs prompts ending with <|notimestamps|> (as parity checks use).
        """
        self._check_batch(enc, prompts)
        out = np.empty((len(prompts), self.info.vocab_size), dtype=np.float32)
        for shape, rows in self._groups(prompts).items():
            if not shape.no_timestamps:
                raise ConfigError(
                    "ct2 can return raw logits only after a prompt ending with <|notimestamps|> "
                    "(in timestamp mode CTranslate2 always applies its timestamp rules)"
                )
            sub = self.select(enc, rows)
            results = self.model.generate(
                sub.data,
                [prompts[i] for i in rows],
                beam_size=1,
                max_length=_ct2_max_length(1, shape),
                return_logits_vocab=True,
                suppress_blank=False,
                suppress_tokens=[],
            )
            for i, result in zip(rows, results):
                logits = _to_numpy(result.logits[0][0])
                out[i] = logits[: self.info.vocab_size]
        return out

    def align(
        self,
        enc: EncoderOutput,
        prompts: list[list[int]],
        texts: list[list[int]],
        num_frames: list[int],
        heads: list[tuple[int, int]],
    ) -> list[TokenAlignment]:
        """CTranslate2's native `Whisper.align` (what faster-whisper's word timestamps run on).

        It teacher-forces start sequence + <|notimestamps|> + text + <|endoftext|> itself, so
        the prompt's trailing <|notimestamps|> is dropped; it normalises, median-filters and
        runs DTW as dwkit.alignment does. `heads` is not passed: CTranslate2 uses the heads
        its converter stored in model.bin (the generation config's, or all heads of the last
        decoder layer when there are none).
        """
        from dwkit.alignment import MEDIAN_FILTER_WIDTH

        self._check_batch(enc, prompts)
        model = self._align_model()
        starts: dict[tuple[int, ...], list[int]] = {}
        for i, prompt in enumerate(prompts):
            start = prompt[:-1] if prompt and prompt[-1] == self.info.no_timestamps else prompt
            starts.setdefault(tuple(start), []).append(i)
        out: list[TokenAlignment | None] = [None] * len(prompts)
        for start, rows in starts.items():
            try:
                results = model.align(
                    self.select(enc, rows).data,
                    list(start),
                    [texts[i] for i in rows],
                    [num_frames[i] for i in rows],
                    median_filter_width=MEDIAN_FILTER_WIDTH,
                )
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"ct2 word alignment failed ({_one_line(exc)})") from exc
            for i, result in zip(rows, results):
                path = np.asarray(result.alignments, dtype=np.int64).reshape(-1, 2)
                out[i] = TokenAlignment(path[:, 0], path[:, 1], [float(p) for p in result.text_token_probs])
        return [a for a in out if a is not None]

    def _align_model(self) -> Any:
        """The model to align with: this one, unless the heads in its config.json point past its
        decoder layers (a distilled student converted with its teacher's heads), on which
        CTranslate2's align reads out of bounds and crashes the process. Then a second copy,
        loaded once from memory with config.json naming dwkit.alignment's fallback heads (all
        heads of the last decoder layer); the files on disk are left as they are."""
        if self._aligner is None:
            self._aligner = self.model
            config_path = self.model_dir / "config.json" if self.model_dir else None
            if config_path is not None and config_path.is_file():
                import ctranslate2

                from dwkit.alignment import alignment_heads
                from dwkit.manifest import read_json_object

                config = read_json_object(config_path)
                info = self.info
                given = config.get("alignment_heads") or []
                inside = [
                    0 <= layer < info.decoder_layers and 0 <= h < info.decoder_heads for layer, h in given
                ]
                if not all(inside):
                    config["alignment_heads"] = [list(pair) for pair in alignment_heads(info)]
                    files = {p.name: p.read_bytes() for p in self.model_dir.iterdir() if p.is_file()}
                    files["config.json"] = json.dumps(config).encode()
                    self._aligner = ctranslate2.models.Whisper(
                        str(self.model_dir), files=files, **self._load_options
                    )
        return self._aligner

    def detect_language(self, enc: EncoderOutput) -> list[dict[str, float]]:
        """Language probabilities after <|startoftranscript|> (softmax over language tokens)."""
        if not self.info.multilingual or not self.info.lang_to_id:
            return [{"en": 1.0} for _ in range(enc.batch_size)]
        try:
            found = self.model.detect_language(enc.data)
        except RuntimeError as exc:
            raise ModelError(f"ct2 language detection failed ({_one_line(exc)})") from exc
        return [{token[2:-2]: float(prob) for token, prob in pairs} for pairs in found]

    # -- helpers -------------------------------------------------------------------------

    def _check_batch(self, enc: EncoderOutput, prompts: list[list[int]]) -> None:
        if len(prompts) != enc.batch_size:
            raise ConfigError(f"{len(prompts)} prompts for {enc.batch_size} encoded windows")

    def _shape(self, prompt: list[int]) -> _PromptShape:
        """CTranslate2's own split (whisper.cc get_sot_index / get_prompt_length)."""
        info = self.info
        if info.sot not in prompt:
            raise ConfigError(f"prompt {prompt} has no <|startoftranscript|> ({info.sot})")
        sot_index = prompt.index(info.sot)
        end = sample_begin(prompt, info)
        return _PromptShape(sot_index, end, len(prompt), prompt[end - 1] == info.no_timestamps)

    def _groups(self, prompts: list[list[int]]) -> dict[_PromptShape, list[int]]:
        """Rows CTranslate2 can decode in one call: same <|startoftranscript|> position and prompt length."""
        groups: dict[_PromptShape, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(self._shape(prompt), []).append(i)
        return groups

    def _budget(self, shape: _PromptShape, max_new_tokens: int | None) -> int:
        """New tokens allowed (end-of-text included), as the shared decoders count them."""
        room = self.info.n_text_ctx - shape.length
        budget = room if max_new_tokens is None else min(room, max_new_tokens)
        if budget < 1:
            raise ConfigError(
                f"no room to decode: the prompt has {shape.length} tokens of {self.info.n_text_ctx}"
                + ("" if max_new_tokens is None or max_new_tokens > 0 else " (max_new_tokens must be > 0)")
            )
        return budget


def _ct2_max_length(budget: int, shape: _PromptShape) -> int:
    """The `max_length` that makes CTranslate2 decode exactly `budget` new tokens at most.

    whisper.cc: new tokens = min(max_length // 2, max_length - start_step), where start_step
    is the number of prompt tokens fed before the last one (prompt length - 1).
    """
    start_step = shape.special_end - 1
    return max(2 * budget, budget + start_step)


def _parse_device(device: str) -> tuple[str, int]:
    import ctranslate2

    name, _, index = device.partition(":")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"ct2 device {device!r}: use cpu, cuda or cuda:N")
    if name == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise BackendUnavailable("ct2 on cuda: no CUDA device visible to CTranslate2 (use device cpu)")
    try:
        return name, int(index or 0)
    except ValueError as exc:
        raise ConfigError(f"ct2 device {device!r}: use cpu, cuda or cuda:N") from exc


def _check_compute_type(compute_type: str, device: str) -> None:
    """Unknown names list the valid ones; known names this device cannot run list what it can."""
    import ctranslate2

    if compute_type in ALIASES:
        return
    if compute_type not in PRECISIONS:
        raise ConfigError(f"ct2 precision {compute_type!r}: choose one of {', '.join(PRECISIONS + ALIASES)}")
    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type not in supported:
        hint = " (float16/bfloat16 compute types need a CUDA GPU)" if device == "cpu" else ""
        raise BackendUnavailable(
            f"ct2 compute type {compute_type} is not supported on {device} here{hint}; "
            f"this device supports {', '.join(sorted(supported))} (or 'default' to run the model's "
            "own precision on the nearest supported type)"
        )


def _to_numpy(view: Any) -> np.ndarray:
    """A StorageView on any device and of any float type as a float32 numpy array."""
    import ctranslate2

    if str(view.device) != "cpu":
        view = view.to_device(ctranslate2.Device.cpu)
    if view.dtype != ctranslate2.DataType.float32:
        view = view.to(ctranslate2.DataType.float32)
    return np.asarray(view)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- declaration ---------------------------------------------------------------------------


def _probe(device: str) -> str | None:
    try:
        import ctranslate2
    except ImportError:
        return "needs ctranslate2: pip install 'dwkit[ct2]'"
    if device.startswith("cuda") and ctranslate2.get_cuda_device_count() == 0:
        return "ctranslate2 sees no CUDA device"
    return None


def _is_ct2_dir(path: Path) -> bool:
    """A faster-whisper / CTranslate2 directory as users download it (no dwkit.json)."""
    from dwkit.foreign import is_ct2_dir

    return path.is_dir() and is_ct2_dir(path)


BACKEND = BackendSpec(
    name="ct2",
    summary="CTranslate2 (the engine faster-whisper runs on), native Whisper.generate",
    backend_class=CT2Backend,
    formats=("ct2",),
    extra="ct2",
    precisions=PRECISIONS,
    aliases=ALIASES,
    devices=("cpu", "cuda"),
    probe=_probe,
    requires=("ctranslate2",),
    # ctranslate2.models.Whisper's own keyword arguments.
    options=(
        BackendOption("flash_attention", bool, "CTranslate2's flash attention (GPU builds)"),
        BackendOption("max_queued_batches", int, "batches queued per replica (CTranslate2's setting)"),
        BackendOption("tensor_parallel", bool, "split the model over several GPUs"),
    ),
    weight_files=(MODEL_FILE,),
    file_problems=lambda model_dir, manifest: missing_file_problems(model_dir, MODEL_FILE),
    recognise=_is_ct2_dir,
    recognise_rank=10,
    bench_precision="int8",
    parity_precision="float32",
)
