"""transformers checkpoint -> OpenVINO IR directory (the `openvino` backend runs it).

The three graphs of `dwkit.onnx_graphs` (encoder, decoder_init, decoder_step) exported by the
onnx converter (or taken from an fp32 onnx directory of the same checkpoint, `onnx_export`),
read by `openvino.convert_model` and saved as IR (`<graph>.xml` + `<graph>.bin`). Going through
dwkit's ONNX graphs, not `convert_model` on the torch modules, keeps one description of the
graphs (names, dynamic axes, the cross-attention placeholder trap) for onnxruntime, TensorRT
and OpenVINO alike, and reading the ONNX is quick (~2 s for tiny.en's encoder, where tracing
the torch module with `convert_model(example_input=...)` took 119 s for base's on our then
heavily loaded shared 2-core machine). Per precision:
- fp32: weights as exported, run with the CPU plugin's inference precision forced to f32
  (on a CPU with avx512_bf16 or AMX the plugin's default is bf16: without the hint an
  "fp32" model silently runs in bf16). Gated like onnx fp32.
- bf16: the same fp32 weights, run with INFERENCE_PRECISION_HINT=bf16. The CPU plugin
  converts weights to bf16 when it compiles, so bf16 storage would only save disk; IR has
  no bf16 weight storage, and its fp16 compression (`compress_to_fp16`) measured no faster
  on tiny.en's encoder (within this shared machine's noise) and adds an fp16 rounding step
  (encoder cosine to f32 0.99991 instead of 0.99994), so the weights stay fp32 on disk.
- int8: the encoder quantised by NNCF post-training quantisation (int8 weights and
  activations: the VNNI / AMX int8 units) on log-mel windows of built-in speech (espeak-ng
  sentences of `dwkit.speech`, or the bundled demo audio), the decoder graphs int8
  weight-only (`nncf.compress_weights`: a decoder step multiplies one token's activations by
  each weight once, so its cost is reading the weight bytes, which int8 weights halve against
  bf16; full PTQ of the step graphs would need calibration data for their cache inputs and
  was not measured).
  Every encoder fc2 keeps float activations by default (`float_fc2`, see `outlier_matmuls`);
  their weights are then int8 weight-only like the decoder's, which halves the encoder on
  disk and in memory at the same accuracy (tiny.en encoder: 17.2 -> 10.1 MB, cosine to f32
  0.99813 -> 0.99814; distil-large-v3.5: 1.27 GB -> ~0.64 GB; the CPU plugin keeps the IR's
  weights mapped besides its repacked copy, so this is twice over in peak RSS). The rest runs
  in bf16 where the CPU has it (the plugin's default). Recorded, not gated beyond catching a
  broken model.

Validation loads the directory in OpenVINO and compares it with transformers fp32
([validation.openvino.*] in dwkit/data/parity_thresholds.toml).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.constants import N_SAMPLES, SAMPLE_RATE
from dwkit.converters import template
from dwkit.converters.base import release_freed_memory
from dwkit.errors import ConversionError, DwkitError
from dwkit.onnx_graphs import DECODER_INIT, DECODER_STEP, ENCODER, GRAPHS, INPUT_FEATURES, graph_file
from dwkit.runtimes.openvino import PRECISIONS, check_ir, ir_file

FORMAT = template.FormatSpec(
    name="openvino",
    module=__name__,
    extra="openvino",
    precisions=PRECISIONS,
    default_precision="fp32",
    requires=("openvino", "onnx", "onnxruntime", "onnxscript", "torch", "transformers"),
    options=("onnx_export", "calibration", "calibration_windows", "float_fc2", "threads", "progress"),
    libraries=("openvino", "nncf", "torch", "transformers", "onnx"),
    # int8 at distil-large-v3.5's size: 16.1 GB peak (NNCF quantising the encoder) for 3.0 GB
    # of fp32 weights, `/usr/bin/time -v dwconvert --to openvino --precision int8` on the EPYC.
    peak_memory_per_fp32_byte=(("int8", 5.4),),
    side_files=(
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
        "config.json",
    ),
)
CALIBRATION_SOURCES = ("speech", "demo")
FLOAT_FC2 = ("all", "first")  # which encoder fc2 MatMuls int8 keeps in float (see outlier_matmuls)
DEFAULT_CALIBRATION_WINDOWS = 8
STAGING = ".onnx-export"


def check_options(
    source: Path, precision: str, opts: Mapping[str, Any], source_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`onnx_export` (an fp32 onnx directory of the same checkpoint: its graphs are read
    instead of exporting again); `calibration` (int8: "speech", espeak-ng sentences, the
    default; "demo", the bundled demo audio; or an audio file); `calibration_windows` (int8:
    how many 30 s windows, default 8); `float_fc2` (int8: "all", the default, keeps every
    encoder layer's fc2 in float, "first" only the first layer's (drifts more, no faster); see
    `outlier_matmuls`); `threads` (validation); `progress`."""
    from dwkit.converters import onnx as onnx_converter
    from dwkit.devices import module_installed

    found = onnx_converter.check_options(source, "fp32", {"fp32_export": opts.get("onnx_export")}, None)
    calibration = str(opts.get("calibration", "speech"))
    windows = int(opts.get("calibration_windows", DEFAULT_CALIBRATION_WINDOWS))
    float_fc2 = str(opts.get("float_fc2", "all"))
    if float_fc2 not in FLOAT_FC2:
        raise ConversionError(f"float_fc2={float_fc2!r}: choose one of {', '.join(FLOAT_FC2)}")
    if precision == "int8":
        if not module_installed("nncf"):
            raise ConversionError("openvino int8 quantises with NNCF: pip install 'dwkit[openvino]'")
        if windows < 1:
            raise ConversionError(f"calibration_windows={windows}: needs at least one window")
        if calibration not in CALIBRATION_SOURCES and not Path(calibration).is_file():
            raise ConversionError(
                f"calibration={calibration!r}: use {' or '.join(CALIBRATION_SOURCES)}, or an audio file"
            )
        if calibration == "speech":
            from dwkit.speech import espeak_available

            if not espeak_available():
                raise ConversionError(
                    "openvino int8 calibrates on espeak-ng speech, and espeak-ng is not installed: "
                    "install it (apt-get install espeak-ng) or pass calibration=demo (the bundled "
                    "demo audio) or calibration=FILE"
                )
    return {
        "reuse": found["reuse"],
        "calibration": calibration,
        "windows": windows,
        "float_fc2": float_fc2,
        "threads": int(opts.get("threads", 0)),
    }


def write(job: template.ConversionJob, out: Path, stages: template.Stages) -> template.Written:
    """Export (or read) the fp32 ONNX graphs, convert each to IR, quantise for int8.

    One graph is alive at a time (converted, quantised, saved, freed) and the onnx export's
    torch memory is handed back before OpenVINO starts: at distil-large-v3.5's size the encoder
    alone is 2.5 GB of fp32 weights, and NNCF holds a second copy while it quantises it.
    """
    info = job.info
    assert info is not None  # openvino converts checkpoints only
    reuse = job.options["reuse"]
    int8 = job.precision == "int8"
    order = (DECODER_INIT, DECODER_STEP, ENCODER)  # the encoder, the largest, last: alone in memory
    stages.expect(
        [*([] if reuse else ["export onnx"]), *(["calibrate"] if int8 else [])]
        + [f"convert {g}" for g in order]
        + ["check graphs", *(["validate"] if job.validate else [])]
    )
    onnx_dir = reuse if reuse is not None else out / STAGING
    if reuse is None:
        with stages("export onnx"):
            from dwkit.converters import onnx as onnx_converter

            template.run(onnx_converter, job.source, onnx_dir, "fp32", validate=False, progress=False)
        release_freed_memory()
    fields: dict[str, Any] = {}
    windows: list[np.ndarray] = []
    if int8:
        with stages("calibrate"):
            windows = calibration_windows(job.options["calibration"], info.n_mels, job.options["windows"])
        fields["calibration"] = {"source": job.options["calibration"], "windows": len(windows)}
        fields["float_fc2"] = job.options["float_fc2"]
    for graph in order:
        with stages(f"convert {graph}"):
            model = _convert_graph(onnx_dir / graph_file(graph))
            if int8 and graph == ENCODER:  # then the float fc2s' weights int8 too (weight-only)
                model = compress_weights(quantise_encoder(model, windows, job.options["float_fc2"]))
            elif int8:
                model = compress_weights(model)
            _save(model, out, graph)
            del model
            release_freed_memory()
    if reuse is None:
        shutil.rmtree(onnx_dir)
    with stages("check graphs"):
        fields["graphs"] = [check_ir(out, graph, info.decoder_layers) for graph in GRAPHS]
    return template.Written(info, fields)


def _convert_graph(path: Path) -> Any:
    import openvino as ov

    try:
        return ov.convert_model(str(path))
    except Exception as exc:  # OpenVINO raises its own OpConversionFailure/GeneralFailure types
        raise ConversionError(f"{path.name}: openvino.convert_model failed ({exc})") from exc


def _save(model: Any, out: Path, graph: str) -> None:
    import openvino as ov

    # compress_to_fp16 would store fp16 weights; the precisions above are the model's own.
    ov.save_model(model, str(out / ir_file(graph)), compress_to_fp16=False)


# -- int8 ---------------------------------------------------------------------------------------


def calibration_windows(calibration: str, n_mels: int, count: int) -> list[np.ndarray]:
    """Up to `count` log-mel windows [1, n_mels, 3000] of built-in speech, 30 s windows taken
    every 15 s (as long-form decoding sees them: full windows and a padded tail)."""
    from dwkit.audio import load_audio
    from dwkit.features import log_mel

    samples = load_audio(str(_calibration_audio(calibration)))
    hop = N_SAMPLES // 2
    starts = list(range(0, max(1, len(samples) - hop), hop))[:count]
    windows = [log_mel(samples[s : s + N_SAMPLES], n_mels)[None].astype(np.float32) for s in starts]
    if len(windows) < count:  # short audio: shifted copies, so each window is another input
        shifts = [int(SAMPLE_RATE * 0.37 * (i + 1)) for i in range(count - len(windows))]
        windows += [log_mel(samples[s:], n_mels)[None].astype(np.float32) for s in shifts if s < len(samples)]
    return windows


def _calibration_audio(calibration: str) -> Path:
    if calibration == "demo":
        from importlib.resources import files

        return Path(str(files("dwkit") / "data" / "demo.flac"))
    if calibration != "speech":
        return Path(calibration)
    from dwkit.bundled import default_cache_dir
    from dwkit.speech import SENTENCES, cached_speech

    try:
        return cached_speech(list(SENTENCES), default_cache_dir() / "speech")
    except DwkitError as exc:
        raise ConversionError(f"openvino int8 calibration: {exc} (or pass calibration=demo)") from exc


def quantise_encoder(model: Any, windows: list[np.ndarray], float_fc2: str = "all") -> Any:
    """NNCF post-training quantisation (int8 weights and activations, the transformer preset:
    per-channel weights, symmetric activations, SmoothQuant, softmax/layer norm kept in float),
    with the fc2 MatMuls `outlier_matmuls` names kept in float."""
    import nncf

    with _nncf_quiet():
        return nncf.quantize(
            model,
            nncf.Dataset(windows, lambda mel: {INPUT_FEATURES: mel}),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(windows),
            ignored_scope=nncf.IgnoredScope(names=outlier_matmuls(model, float_fc2)),
        )


def outlier_matmuls(model: Any, which: str = "all") -> list[str]:
    """The encoder layers' fc2 MatMuls (each reads a [.., 4 * d_model] GELU output), all of them
    or the first layer's. Their inputs have a few channels far above the rest, which one int8
    scale per tensor cannot hold. Measured against OpenVINO fp32 (encoder cosine; 2 threads on
    the shared EPYC): tiny.en 0.958 with every fc2 quantised, 0.994 with the first and last
    in float, 0.998 with all; base 0.974-0.978 with the first only (its first-step logits
    then shift by up to 8.7 and the parity gate's numerics fail, though its transcripts kept
    WER 0 / 0 / 0.65% on short / sequential / chunked), 0.997 with all. Keeping all in float
    cost no measurable speed on base (2 threads, quiet EPYC: 190 ms per window against 188 ms
    with the first only; bf16 259 ms, f32 492 ms). SmoothQuant cannot move these outliers (no layer norm
    precedes fc2 to fold its scales into)."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        weight = op.input_value(1).get_partial_shape()
        if (
            weight.rank.get_length() == 2
            and weight.is_static
            and weight[1].get_length() == 4 * weight[0].get_length()
        ):
            found.append(op.get_friendly_name())
    return found if which == "all" else found[:1]


def compress_weights(model: Any) -> Any:
    """Weight-only int8 (per output channel, asymmetric): activations stay in float."""
    import nncf

    with _nncf_quiet():
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


@contextmanager
def _nncf_quiet() -> Iterator[None]:
    """NNCF logs INFO lines and draws rich progress bars on stdout on every call; a conversion
    shows its own stages on stderr, and dwconvert's stdout is its result."""
    import contextlib
    import io
    import logging

    import nncf

    logger = logging.getLogger("nncf")
    level = logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


# -- validation ---------------------------------------------------------------------------------


def validate_model(job: template.ConversionJob, model_dir: Path) -> dict[str, Any]:
    """Load the written directory in OpenVINO and compare it with transformers fp32."""
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.openvino import OpenVinoBackend

    threads = job.options["threads"]
    reference = template.hf_reference(job.source, threads)
    candidate = OpenVinoBackend.from_model_dir(model_dir, RuntimeConfig(threads=threads))
    return template.numeric_validation(
        reference,
        candidate,
        FORMAT,
        job.precision,
        runtime=f"openvino CPU, inference precision {candidate.inference_precision}",
    )
