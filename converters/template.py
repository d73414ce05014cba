"""The one conversion procedure every output format runs; a format module fills in its files.

`run` owns everything formats have in common, in this order: the precision and option checks,
what the source is (a transformers checkpoint, or a converted directory the format reads),
the atomic output directory, the side files, the typed manifest (`dwkit.manifest.Manifest`)
with the source id and checksums, validation with tolerances from the one thresholds file
(`[validation]` in dwkit/data/parity_thresholds.toml), record-or-abort, and the
`ConversionResult`. A format module declares itself (`FORMAT = FormatSpec(...)`) and provides
three functions:

- `check_options(source, precision, opts, source_manifest) -> dict`: parse and check its own
  options before anything is written (a bad value fails in one line, nothing on disk);
- `write(job, out, stages) -> Written`: write its files into the temporary directory `out`;
- `validate_model(job, model_dir) -> dict | None`: load `model_dir` in the real target
  runtime and compare it with transformers (normally through `numeric_validation`); None
  when there is nothing to run (a TensorRT dry run).
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from dwkit.converters.base import (
    ConversionResult,
    atomic_output_dir,
    copy_if_present,
    library_versions,
    require_checkpoint,
)
from dwkit.errors import ConversionError, ValidationError
from dwkit.manifest import Manifest, read_manifest, weights_checksum, write_manifest
from dwkit.model_info import ModelInfo

VALIDATION_INPUT = "dwkit/data/demo.flac (first 30 s), greedy, no timestamps"
HF_REFERENCE = "hf fp32"


@dataclass(frozen=True)
class FormatSpec:
    """What an output format is, declared once in its module; the registry, the CLI choices
    and the template read everything from here."""

    name: str  # `--to` name and the manifest's "format"
    module: str  # the module that writes it
    extra: str  # pip extra that installs its libraries
    precisions: tuple[str, ...]  # the format's own precision names
    default_precision: str
    requires: tuple[str, ...] = ()  # modules it imports to convert (probed, not imported)
    options: tuple[str, ...] = ()  # conversion options beyond validate/overwrite
    libraries: tuple[str, ...] = ()  # distributions whose versions the manifest records
    side_files: tuple[str, ...] = ()  # files copied from the source checkpoint when present
    reads: tuple[str, ...] = ()  # converted formats it takes as a source besides checkpoints
    # Measured peak RSS of a conversion per byte of the model's fp32 weights, (precision,
    # factor) where measured: `auto` skips a configuration whose first-use conversion would not
    # fit in this machine's free memory (dwkit.cpu_choice.conversion_memory_problem).
    peak_memory_per_fp32_byte: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ConversionJob:
    """One conversion request, checked: what `write` and `validate_model` work from."""

    spec: FormatSpec
    source: Path
    precision: str
    options: Mapping[str, Any]  # as `check_options` returned them
    validate: bool
    source_manifest: dict[str, Any] | None  # the source's dwkit.json when it is a converted directory
    info: ModelInfo | None  # the model facts of a checkpoint source (None: see source_manifest)


@dataclass
class Written:
    """What a format's `write` produced, for the manifest."""

    info: ModelInfo
    fields: dict[str, Any] = field(default_factory=dict)  # format-specific manifest keys
    source: dict[str, Any] | None = None  # the original source, when the job's is a converted directory
    versions: dict[str, str] = field(default_factory=dict)  # beyond the spec's libraries


class Stages:
    """Timed stages of one conversion, shown as a tqdm bar on stderr when asked (full-size
    exports take minutes)."""

    def __init__(self, name: str, enabled: bool):
        from tqdm import tqdm

        self.name = name
        self.seconds: dict[str, float] = {}
        self._bar = tqdm(desc=name, unit="stage", file=sys.stderr, disable=not enabled, leave=False)

    def expect(self, names: list[str]) -> None:
        """The stages to come, so the bar can show how far it is."""
        self._bar.total = len(self.seconds) + len(names)
        self._bar.refresh()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._bar.set_description(f"{self.name}: {stage}")
        started = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - started, 2)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def check_request(spec: FormatSpec, precision: str, opts: Mapping[str, Any]) -> None:
    """The precision is one of the format's and every option is one it takes."""
    if precision not in spec.precisions:
        raise ConversionError(
            f"unknown precision {precision!r} for {spec.name}; choose one of {', '.join(spec.precisions)}"
        )
    unknown = sorted(set(opts) - set(spec.options))
    if unknown:
        takes = f"it takes {', '.join(spec.options)}" if spec.options else "it takes none"
        raise ConversionError(f"{spec.name} conversion does not take {', '.join(unknown)}; {takes}")


def inspect_source(spec: FormatSpec, source: Path) -> tuple[dict[str, Any] | None, ModelInfo | None]:
    """(manifest, None) for a converted source directory the format reads; (None, its model
    facts) for a transformers Whisper checkpoint, checked to have weights and a tokenizer.
    Other converted formats are refused."""
    manifest = read_manifest(source) if source.is_dir() else None
    found = (manifest or {}).get("format")
    if found in (None, "hf"):
        info = ModelInfo.from_hf_dir(source)  # not a Whisper checkpoint: a ModelError first
        require_checkpoint(source)
        return None, info
    if found not in spec.reads:
        also = f" or from its {'/'.join(spec.reads)} model directory" if spec.reads else ""
        raise ConversionError(
            f"{source}: is a {found} model; convert to {spec.name} from the transformers checkpoint{also}"
        )
    return manifest, None


_HUB_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]+)")


def source_id(source: Path) -> dict[str, str]:
    """The source as a user would name it: its path, and the hub id + revision of a hub snapshot."""
    found: dict[str, str] = {"path": str(Path(source).resolve())}
    match = _HUB_SNAPSHOT.search(Path(source).as_posix())
    if match:
        found["hub_id"] = f"{match['org']}/{match['name']}"
        found["revision"] = match["revision"]
    return found


def run(
    module: ModuleType,
    source: Path,
    out_dir: str | Path,
    precision: str,
    *,
    validate: bool = True,
    overwrite: bool = False,
    **opts: Any,
) -> ConversionResult:
    """Convert `source` with format `module`; the directory appears only when everything,
    validation included, succeeded."""
    spec: FormatSpec = module.FORMAT
    source = Path(source)
    check_request(spec, precision, opts)
    found, info = inspect_source(spec, source)
    options = module.check_options(source, precision, opts, found)
    job = ConversionJob(spec, source, precision, options, validate, found, info)
    stages = Stages(spec.name, bool(opts.get("progress", "progress" in spec.options)))
    try:
        with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
            started = time.perf_counter()
            written = module.write(job, tmp, stages)
            copy_if_present(source, tmp, spec.side_files)
            manifest = _manifest(job, written, tmp, time.perf_counter() - started, stages.seconds)
            write_manifest(tmp, manifest)
            if validate:
                with stages("validate"):
                    manifest.validation = module.validate_model(job, tmp)
                manifest.stage_seconds = dict(stages.seconds)
                record_or_abort(tmp, manifest, spec, precision)
            files = sorted(p.name for p in tmp.iterdir())
    finally:
        stages.close()
    out = Path(out_dir).expanduser().resolve()
    return ConversionResult(out, spec.name, precision, manifest.to_dict(), manifest.validation, files)


def _manifest(
    job: ConversionJob, written: Written, out: Path, seconds: float, stages: dict[str, float]
) -> Manifest:
    source = written.source
    if source is None:
        source = {**source_id(job.source), "weights_checksum": weights_checksum(job.source)}
    return Manifest(
        format=job.spec.name,
        precision=job.precision,
        source=source,
        tool=job.spec.module,
        weights_checksum=weights_checksum(out),
        library_versions={**library_versions(*job.spec.libraries), **written.versions},
        model_info=written.info.to_dict(),
        conversion_seconds=round(seconds, 2),
        stage_seconds=dict(stages) or None,
        fields=written.fields,
    )


def record_or_abort(out: Path, manifest: Manifest, spec: FormatSpec, precision: str) -> None:
    """Store the verdict in the manifest; a failed gate aborts the conversion (nothing is kept).

    `passed` is None when the runtime could not run the numerics (recorded, not a failure).
    """
    write_manifest(out, manifest)
    validation = manifest.validation
    if validation is not None and validation["passed"] is False:
        reference = validation.get("reference") or HF_REFERENCE
        raise ValidationError(
            f"{spec.name} {precision} does not match {'transformers' if reference == HF_REFERENCE else reference}: "
            f"{'; '.join(validation['failures'])}; "
            "nothing was written (use --no-validate to keep it anyway)"
        )


# -- validation -----------------------------------------------------------------------------


def hf_reference(source: Path, threads: int = 0) -> Any:
    """transformers fp32 on the source checkpoint: what every conversion is compared with."""
    from dwkit.runtimes.base import RuntimeConfig
    from dwkit.runtimes.hf import HFBackend

    return HFBackend.from_model_dir(source, RuntimeConfig(threads=threads))


def numeric_validation(
    reference: Any,
    candidate: Any,
    spec: FormatSpec,
    precision: str,
    reference_name: str = HF_REFERENCE,
    **facts: Any,
) -> dict[str, Any]:
    """Compare `candidate` with `reference` on the fixed validation input and judge it with the
    format's tolerances for `precision` (none: measured and recorded, not gated)."""
    from dwkit.compare import compare_backends, gate, validation_limits, validation_mel

    started = time.perf_counter()
    report = compare_backends(reference, candidate, validation_mel(reference.info.n_mels)).to_dict()
    return {
        **gate(report, validation_limits(spec.name, precision)),
        "level": "numeric",
        "reference": reference_name,
        "input": VALIDATION_INPUT,
        **facts,
        "seconds": round(time.perf_counter() - started, 2),
        **report,
    }
