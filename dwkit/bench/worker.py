"""One benchmark job in its own process: `python -m dwkit.bench.worker < job.json`.

Each backend runs in a fresh process so its load time and peak memory are its own, and a
crash (whisper.cpp aborts, out-of-memory kills) costs one row, not the run. The job is a JSON
object on stdin; the result is one JSON object on stdout. While the job runs, file
descriptor 1 points at stderr, so libraries that print (C code included) cannot corrupt it.
With `--serve` the worker holds one loaded system and answers JSON lines (start, repeat,
finish), so the parent can interleave the repeats of several systems.

Jobs (`kind`): `run` (transcribe with one system, timing encoder and decoder inside),
`convert` (one format, cached by the parent), `synthetic_model` (a seeded random
checkpoint), `floor` (fp32 / bf16 matmul throughput), `probe` (which backends cannot run on
the job's device here, and why).
"""

from __future__ import annotations

import os

for _key, _value in (
    ("OMP_WAIT_POLICY", "PASSIVE"),
    ("GGML_NO_BACKTRACE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_key, _value)  # before any OpenMP runtime starts (see measure.WORKER_ENV)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from dwkit.bench.measure import (  # noqa: E402
    GPU_FLOOR_MATMUL_SIZE,
    CallTimer,
    TimedModel,
    cpu_seconds,
    cpu_utilisation,
    cuda_sync,
    dir_size_mb,
    gpu_memory_mb,
    instrument_backend,
    matmul_gflops,
    peak_rss_mb,
    per_unit_ms,
    summarise_latencies,
)
from dwkit.constants import SAMPLE_RATE  # noqa: E402
from dwkit.errors import ConfigError  # noqa: E402

WARMUP_SECONDS = 10.0
SYSTEMS = ("dwkit", "faster-whisper", "transformers-pipeline", "whisper.cpp", "openvino-genai")
# faster-whisper measures compression on text (OpenAI's), dwkit on token ids (transformers'):
# each keeps its own default threshold for its own measure.
FASTER_WHISPER_COMPRESSION_THRESHOLD = 2.4


@dataclass
class Loaded:
    """A system ready to transcribe: text of one recording, and its timers."""

    transcribe: Callable[[np.ndarray], str]
    encoder: CallTimer
    decoder: CallTimer
    settings: dict[str, Any]
    backend: Any = None  # dwkit's backend; with a draft model it carries the acceptance `stats`


# -- run --------------------------------------------------------------------------------------


def job_device(job: dict[str, Any]) -> str:
    """Where the job runs: cpu (jobs from before `--device` carry none), cuda or cuda:N."""
    return str(job.get("device") or "cpu")


class Session:
    """One system loaded and warmed up, transcribing the job's files one repeat at a time.

    `repeat()` can be driven from outside (`--serve`), so the parent can interleave the
    repeats of several systems and a noisy neighbour hurts each of them alike.
    """

    def __init__(self, job: dict[str, Any]):
        from dwkit.audio import load_audio

        system = job.get("system", "dwkit")
        if system not in SYSTEMS:
            raise ConfigError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
        self.job = job
        self.device = job_device(job)
        self.audios = [load_audio(path) for path in job["audio"]]
        started = time.perf_counter()
        self.loaded = LOADERS[system](job)
        self.load_s = time.perf_counter() - started
        if job.get("warmup", True):  # first-call costs (allocations, thread pools, kernel choice) excluded
            self.loaded.transcribe(self.audios[0][: int(WARMUP_SECONDS * SAMPLE_RATE)])
        self.loaded.encoder.reset()
        self.loaded.decoder.reset()
        if hasattr(self.loaded.backend, "stats"):  # acceptance of the timed runs only
            self.loaded.backend.stats = type(self.loaded.backend.stats)()
        self.latencies: list[list[float]] = []
        self.texts: list[str] = []
        self.cpu_s = 0.0

    def repeat(self) -> list[float]:
        """Transcribe every file once; the seconds each took."""
        row = []
        cpu_before = cpu_seconds()
        for samples in self.audios:
            started = time.perf_counter()
            text = self.loaded.transcribe(samples)
            row.append(time.perf_counter() - started)
            if not self.latencies:
                self.texts.append(text)
        self.cpu_s += cpu_seconds() - cpu_before
        self.latencies.append(row)
        return row

    def finish(self) -> dict[str, Any]:
        """Every figure of this system: RTFx, latency, encoder/decoder cost, load, memory, size."""
        loaded = self.loaded
        audio_seconds = [len(a) / SAMPLE_RATE for a in self.audios]
        windows, tokens = loaded.encoder.units, loaded.decoder.units
        wall = sum(t for row in self.latencies for t in row)
        return {
            **summarise_latencies(audio_seconds, self.latencies),
            "load_s": round(self.load_s, 3),
            "encoder_ms_per_window": per_unit_ms(loaded.encoder.seconds, windows),
            "decoder_ms_per_token": per_unit_ms(loaded.decoder.seconds, tokens),
            "windows": windows,
            "tokens": tokens,
            "tokens_per_window": round(tokens / windows, 2) if windows else None,
            "encoder_seconds": round(loaded.encoder.seconds, 4),
            "decoder_seconds": round(loaded.decoder.seconds, 4),
            "cpu_seconds": round(self.cpu_s, 3),
            "cpu_utilisation": cpu_utilisation(self.cpu_s, wall, int(self.job.get("threads") or 0)),
            "peak_rss_mb": peak_rss_mb(),
            **(gpu_memory_mb(self.device) if self.device.startswith("cuda") else {}),
            "size_mb": dir_size_mb(self.job["model_dir"]),
            "file_seconds": [round(s, 3) for s in audio_seconds],
            "latencies_s": [[round(t, 4) for t in row] for row in self.latencies],
            "texts": self.texts,
            "settings": loaded.settings,
            **({"draft": loaded.backend.stats.to_dict()} if hasattr(loaded.backend, "stats") else {}),
        }


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Load the system, warm it up, transcribe every file `repeat` times; time everything."""
    session = Session(job)
    for _ in range(int(job.get("repeat", 1))):
        session.repeat()
    return session.finish()


def longform_options(job: dict[str, Any], info: Any) -> Any:
    """The engine's options for this job; with `tokens_per_window`, exactly N tokens per window.

    Random weights never emit end-of-text sensibly, so forced mode suppresses it, and every
    timestamp after <|0.00|>: the timestamp rules then make the first token <|0.00|> and
    every later one text, the window never splits (seek moves a whole window), and each
    window decodes exactly N tokens at temperature 0 with no fallback and no silence skip.
    """
    from dwkit.decoding.options import DecodeOptions
    from dwkit.longform.options import LongformOptions

    opts = LongformOptions(
        mode=job["mode"],
        language=job.get("language") or None,
        batch_size=int(job.get("batch_size", 8)),
    )
    n = job.get("tokens_per_window")
    if not n:
        return opts
    return replace(
        opts,
        temperatures=(0.0,),
        compression_ratio_threshold=None,
        logprob_threshold=None,
        no_speech_threshold=None,
        exact_transformers=True,  # exactly N tokens per window: no second, no-timestamp decode per chunk
        decode=DecodeOptions(max_new_tokens=int(n), suppress_tokens=forced_suppress_tokens(info)),
    )


def forced_suppress_tokens(info: Any) -> list[int]:
    """The model's own suppressed tokens + end-of-text + every timestamp after <|0.00|>."""
    timestamps = range(info.timestamp_begin + 1, info.vocab_size)
    return sorted({*info.suppress_tokens, info.eot, *timestamps})


def _settings(opts: Any) -> dict[str, Any]:
    """Every option the run used (from the options schema), for the report."""
    from dwkit.schema import flat_values

    settings = flat_values(opts)
    forced = opts.decode.suppress_tokens is not None
    settings["suppress_tokens"] = (
        "forced mode: model's + eot + timestamps after <|0.00|>" if forced else "model's"
    )
    return settings


def load_dwkit(job: dict[str, Any]) -> Loaded:
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.transcriber import Transcriber

    runtime = RuntimeConfig(
        device=job_device(job),
        threads=int(job.get("threads", 0)),
        precision=job.get("precision"),
        batch_size=int(job.get("batch_size", 8)),
        options=dict(job.get("runtime_options") or {}),
    )
    draft = None
    if job.get("draft_model"):
        from dwkit.decoding.assisted import DraftOptions

        draft = DraftOptions(
            model=job["draft_model"],
            precision=job.get("draft_precision"),
            tokens=int(job.get("draft_tokens", 5)),
            adaptive=bool(job.get("draft_adaptive")),
        )
    transcriber = Transcriber.from_model_dir(job["model_dir"], job["backend"], runtime, draft=draft)
    transcriber.options = longform_options(job, transcriber.backend.info)
    encoder, decoder = instrument_backend(transcriber.backend, cuda_sync if runtime.device != "cpu" else None)
    settings = _settings(transcriber.options)
    if draft is not None:
        settings["draft"] = {"model": draft.model, "precision": draft.precision, "tokens": draft.tokens,
                             "adaptive": draft.adaptive, "shares_encoder": transcriber.backend.shares_encoder}  # fmt: skip
    return Loaded(
        lambda samples: transcriber.transcribe(samples).text, encoder, decoder, settings, transcriber.backend
    )


def faster_whisper_model_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """WhisperModel's device arguments for the job: cuda[:N] as device + device_index, and the
    job's compute type (the planner asks float16 on a GPU, int8 on the CPU)."""
    name, _, index = job_device(job).partition(":")
    return {
        "device": name,
        "device_index": int(index or 0),
        "compute_type": job.get("precision") or "default",
        "cpu_threads": int(job.get("threads", 0)),
        "num_workers": 1,
    }


def load_faster_whisper(job: dict[str, Any]) -> Loaded:
    """faster-whisper's own transcribe on the same CTranslate2 directory: greedy, no VAD."""
    from faster_whisper import WhisperModel

    from dwkit.model_info import ModelInfo

    info = ModelInfo.from_model_dir(Path(job["model_dir"]))
    model = WhisperModel(str(job["model_dir"]), **faster_whisper_model_kwargs(job))
    opts = longform_options(job, info)
    n = job.get("tokens_per_window")
    kwargs: dict[str, Any] = {
        "language": job.get("language") or None,
        "beam_size": 1,
        "best_of": 1,
        "temperature": list(opts.temperatures),
        "compression_ratio_threshold": FASTER_WHISPER_COMPRESSION_THRESHOLD,
        "log_prob_threshold": opts.logprob_threshold,
        "no_speech_threshold": opts.no_speech_threshold,
        "condition_on_previous_text": opts.condition_on_prev_tokens,
        "vad_filter": False,
        "without_timestamps": False,
        "word_timestamps": False,
    }
    if n:
        prompt_len = 3 if info.multilingual else 1  # <|startoftranscript|> [language, task]
        kwargs.update(
            compression_ratio_threshold=None,
            suppress_tokens=forced_suppress_tokens(info),
            # CTranslate2 decodes at most min(max_length // 2, max_length - prompt + 1) tokens and
            # faster-whisper passes max_length = prompt + max_new_tokens: this makes it exactly n.
            max_new_tokens=max(2 * int(n) - prompt_len, int(n) - 1),
        )
    timed = model.model = TimedModel(model.model, int(n) if n else None)

    def transcribe(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, **kwargs)
        return "".join(s.text for s in segments)

    settings = {k: v for k, v in kwargs.items() if k != "suppress_tokens"}
    settings["mode"] = "sequential (faster-whisper WhisperModel.transcribe)"
    if n:
        settings["suppress_tokens"] = "forced mode: model's + eot + timestamps after <|0.00|>"
    return Loaded(transcribe, timed.encoder, timed.decoder, settings)


def load_pipeline(job: dict[str, Any]) -> Loaded:
    """transformers' own ASR pipeline, chunked (chunk_length_s as dwkit's), greedy, at the
    job's precision (fp32 on the CPU, fp16 on a GPU) on the job's device."""
    import torch
    from transformers import WhisperForConditionalGeneration, pipeline
    from transformers.utils import logging as hf_logging

    from dwkit.model_info import ModelInfo
    from dwkit.runtimes.hf import quiet_loading

    hf_logging.set_verbosity_error()
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    model_dir = str(job["model_dir"])
    info = ModelInfo.from_hf_dir(Path(model_dir))
    opts = longform_options(job, info)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        job.get("precision") or "fp32"
    ]
    device = job_device(job)
    with quiet_loading():
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).eval().to(device)
    pipe = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=model_dir,
        feature_extractor=model_dir,
        chunk_length_s=opts.chunk_length_s,
        batch_size=opts.batch_size,
        device=device,
    )
    encoder = CallTimer(lambda *a: None)
    started: list[float] = []

    sync = cuda_sync if device != "cpu" else (lambda: None)

    def before(module: Any, args: Any, kwargs: Any) -> None:
        sync()
        started.append(time.perf_counter())

    def after(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        sync()
        encoder.seconds += time.perf_counter() - started.pop()
        features = kwargs.get("input_features", args[0] if args else None)
        encoder.calls += 1
        encoder.units += int(features.shape[0]) if features is not None else 1

    model.model.encoder.register_forward_pre_hook(before, with_kwargs=True)
    model.model.encoder.register_forward_hook(after, with_kwargs=True)
    eot, ts_begin = info.eot, info.timestamp_begin

    def count(_: Any, output: Any) -> int:
        sequences = output["sequences"] if isinstance(output, dict) else output
        total = 0
        for row in sequences.tolist():
            total += sum(1 for t in row if t < eot or t >= ts_begin) + int(eot in row)
        return total

    generate = CallTimer(model.generate, count)
    model.generate = generate  # the pipeline calls self.model.generate
    decoder = CallTimer(generate)  # filled per transcription below: generate's time minus the encoder's
    generate_kwargs: dict[str, Any] = {"num_beams": 1, "do_sample": False}
    if info.multilingual:
        generate_kwargs.update(language=job.get("language") or "en", task="transcribe")
    n = job.get("tokens_per_window")
    if n:
        generate_kwargs.update(max_new_tokens=int(n), suppress_tokens=forced_suppress_tokens(info))

    def transcribe(samples: np.ndarray) -> str:
        seconds, units, calls, in_encoder = generate.seconds, generate.units, generate.calls, encoder.seconds
        out = pipe(
            {"raw": samples, "sampling_rate": SAMPLE_RATE},
            return_timestamps=True,
            generate_kwargs=dict(generate_kwargs),
        )
        decoder.seconds += (generate.seconds - seconds) - (encoder.seconds - in_encoder)
        decoder.units += generate.units - units
        decoder.calls += generate.calls - calls
        return str(out["text"])

    settings = {
        "mode": "chunked (transformers pipeline)",
        "chunk_length_s": opts.chunk_length_s,
        "stride_length_s": "chunk/6 (pipeline default)",
        "batch_size": opts.batch_size,
        "return_timestamps": True,
        **{k: v for k, v in generate_kwargs.items() if k != "suppress_tokens"},
    }
    if n:
        settings["suppress_tokens"] = "forced mode: model's + eot + timestamps after <|0.00|>"
    return Loaded(transcribe, encoder, decoder, settings)


def load_whisper_cpp(job: dict[str, Any]) -> Loaded:
    """whisper.cpp's own whisper_full (pywhispercpp) on the same ggml file, with its own
    decoding rules. Encoding and decoding happen inside one C call, so neither is timed apart."""
    from pywhispercpp.model import Model

    from dwkit.converters.ggml import MODEL_FILE

    params: dict[str, Any] = {"language": job.get("language") or "en"}
    if job.get("threads"):
        params["n_threads"] = int(job["threads"])
    model = Model(
        str(Path(job["model_dir"]) / MODEL_FILE),
        redirect_whispercpp_logs_to=None,
        print_progress=False,
        print_realtime=False,
        **params,
    )

    def transcribe(samples: np.ndarray) -> str:
        return " ".join(segment.text for segment in model.transcribe(samples))

    untimed = CallTimer(lambda *a: None)
    settings = {"mode": "sequential (whisper.cpp whisper_full, its defaults)", **params}
    return Loaded(transcribe, untimed, CallTimer(lambda *a: None), settings)


def load_openvino_genai(job: dict[str, Any]) -> Loaded:
    """OpenVINO GenAI's own WhisperPipeline.generate on its export (bench/openvino_genai.py),
    greedy, with timestamps as dwkit's and faster-whisper's sequential rows. Encoder and
    decoder times are GenAI's own per-inference figures (WhisperRawPerfMetrics: one encoder
    inference per window, one decoder inference per token), not wall time around them."""
    import openvino as ov
    import openvino_genai

    from dwkit.bench.openvino_genai import INT8_WEIGHTS
    from dwkit.model_info import ModelInfo

    info = ModelInfo.from_model_dir(Path(job["model_dir"]))
    properties: dict[str, Any] = {}
    if job.get("threads"):
        properties["INFERENCE_NUM_THREADS"] = int(job["threads"])
    if job.get("precision") == "fp32":  # else the plugin's default (bf16 where the CPU has it)
        properties["INFERENCE_PRECISION_HINT"] = "f32"
    pipe = openvino_genai.WhisperPipeline(str(job["model_dir"]), "CPU", **properties)
    config = pipe.get_generation_config()
    config.return_timestamps = True
    if info.multilingual:
        config.task = "transcribe"
        if job.get("language"):
            config.language = f"<|{job['language']}|>"
    n = job.get("tokens_per_window")
    if n:
        config.suppress_tokens = forced_suppress_tokens(info)
        # With timestamps WhisperPipeline makes max_new_tokens - 1 decoder calls per window
        # (2026.4.1: 4 for 5, 19 for 20; tests/test_bench_openvino_genai.py checks n per window).
        config.max_new_tokens = int(n) + 1
    encoder, decoder = CallTimer(lambda *a: None), CallTimer(lambda *a: None)

    def transcribe(samples: np.ndarray) -> str:
        result = pipe.generate(samples.astype(np.float32), config)
        raw = result.perf_metrics.whisper_raw_metrics
        for timer, durations in (
            (encoder, raw.encode_inference_durations),
            (decoder, raw.decode_inference_durations),
        ):
            timer.seconds += sum(durations) / 1e6  # microseconds
            timer.calls += len(durations)
            timer.units += len(durations)  # a window each / a token each (one row, greedy)
        return "".join(result.texts)

    settings: dict[str, Any] = {
        "mode": "sequential (OpenVINO GenAI WhisperPipeline.generate)",
        "device": "CPU",
        **properties,
        "inference_precision": properties.get("INFERENCE_PRECISION_HINT")
        or ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string(),
        "weights": INT8_WEIGHTS if job.get("precision") == "int8" else "fp32",
        "language": config.language or None,
        "return_timestamps": True,
        "decoding": "greedy; WhisperPipeline has no temperature fallback, no compression-ratio, "
        "log-prob or no-speech checks, and no conditioning on previous text",
    }
    if n:
        settings["max_new_tokens"] = config.max_new_tokens
        settings["suppress_tokens"] = "forced mode: model's + eot + timestamps after <|0.00|>"
    return Loaded(transcribe, encoder, decoder, settings)


LOADERS: dict[str, Callable[[dict[str, Any]], Loaded]] = {
    "dwkit": load_dwkit,
    "faster-whisper": load_faster_whisper,
    "transformers-pipeline": load_pipeline,
    "whisper.cpp": load_whisper_cpp,
    "openvino-genai": load_openvino_genai,
}

# -- preparation jobs -------------------------------------------------------------------------


def convert(job: dict[str, Any]) -> dict[str, Any]:
    from dwkit.converters import convert as convert_model

    started = time.perf_counter()
    result = convert_model(
        job["source"],
        job["out_dir"],
        job["format"],
        job["precision"],
        validate=bool(job.get("validate", False)),
        overwrite=True,
        **(job.get("options") or {}),
    )
    return {
        "out_dir": str(result.out_dir),
        "seconds": round(time.perf_counter() - started, 1),
        "size_mb": dir_size_mb(result.out_dir),
        "peak_rss_mb": peak_rss_mb(),
        "validated": bool(job.get("validate", False)),
    }


def synthetic_model(job: dict[str, Any]) -> dict[str, Any]:
    from dwkit.synthetic import random_model

    started = time.perf_counter()
    cache = Path(job["cache_dir"]) if job.get("cache_dir") else None
    out = random_model(job["preset"], seed=int(job.get("seed", 0)), cache_dir=cache)
    return {
        "model_dir": str(out),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def floor(job: dict[str, Any]) -> dict[str, Any]:
    """Matmul throughput on the job's device: the CPU's cores, or the GPU (fp16 too there)."""
    device = job_device(job)
    on_gpu = device.startswith("cuda")
    size = int(job.get("size") or (GPU_FLOOR_MATMUL_SIZE if on_gpu else 4096))
    threads = int(job.get("threads", 0))
    dtypes = ("fp32", "bf16", "fp16") if on_gpu else ("fp32", "bf16")
    found: dict[str, Any] = {"size": size, "threads": threads, "device": device}
    for dtype in dtypes:
        found[f"{dtype}_gflops"] = round(
            matmul_gflops(dtype, size, threads, reps=10 if on_gpu else 3, device=device), 1
        )
    if on_gpu:
        import torch

        found["device_name"] = torch.cuda.get_device_name(device)
    return found


def probe(job: dict[str, Any]) -> dict[str, Any]:
    """Why each of the job's backends cannot run on its device here (each backend's own probe:
    its library imports, and on cuda that it was built with CUDA); those that can are left out."""
    from dwkit.runtimes import unavailable_reason

    device = job_device(job)
    reasons = {name: unavailable_reason(name, device) for name in job.get("backends") or []}
    return {"unavailable": {name: why for name, why in reasons.items() if why}}


def openvino_genai_export(job: dict[str, Any]) -> dict[str, Any]:
    from dwkit.bench.openvino_genai import export

    return export(Path(job["source"]), Path(job["out_dir"]), job["precision"])


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "run": run,
    "convert": convert,
    "synthetic_model": synthetic_model,
    "floor": floor,
    "probe": probe,
    "openvino_genai_export": openvino_genai_export,
}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this process; errors become {"error": one line} (DwkitError) or propagate."""
    from dwkit.errors import DwkitError

    kind = job.get("kind")
    if kind not in JOBS:
        raise ConfigError(f"unknown job kind {kind!r}; choose one of {', '.join(JOBS)}")
    try:
        return JOBS[kind](job)
    except DwkitError as exc:
        return {"error": " ".join(str(exc).split())}


def _one_line(exc: BaseException) -> str:
    from dwkit.errors import DwkitError

    message = " ".join(str(exc).split())
    return message if isinstance(exc, DwkitError) else f"{type(exc).__name__}: {message}"


def serve(reply: Callable[[dict[str, Any]], None]) -> int:
    """JSON lines on stdin: {"op": "start", "job": {...}}, then {"op": "repeat"} any number of
    times, then {"op": "finish"}; one JSON line back for each. An error ends the session."""
    session: Session | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            op = command.get("op")
            if op == "start":
                session = Session(command["job"])
                reply({"load_s": round(session.load_s, 3)})
            elif session is None:
                raise ConfigError(f"{op!r} before 'start'")
            elif op == "repeat":
                reply({"latencies_s": [round(t, 4) for t in session.repeat()]})
            elif op == "finish":
                reply(session.finish())
                return 0
            else:
                raise ConfigError(f"unknown op {op!r}; expected start, repeat or finish")
        except Exception as exc:
            import traceback

            traceback.print_exc()
            reply({"error": _one_line(exc)})
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed while a job runs goes to stderr, not into the JSON
    sys.stdout = sys.stderr
    out = os.fdopen(result_fd, "w")

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    if argv[:1] == ["--serve"]:
        return serve(reply)
    try:
        result = run_job(json.loads(sys.stdin.read()))
    except Exception as exc:  # a bug or a library failure: one line for the table, traceback above
        import traceback

        traceback.print_exc()
        result = {"error": _one_line(exc)}
    reply(result)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
