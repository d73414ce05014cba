"""The parity gate: does a converted model transcribe like transformers?

Every candidate (a backend + model directory + precision) is compared with the transformers
baseline (the hf backend, fp32, on the source checkpoint) on identical inputs, at three levels:

1. numerics: encoder states and first-step logits on the first 30 s of each clip (max abs
   diff, cosine); a backend that cannot expose one of them gets 'n/a', not a failure;
2. tokens: the greedy tokens the long-form engine decoded for every 30 s window (exact-match
   rate over windows, first divergence);
3. transcripts: WER of the candidate's transcript against the baseline's after Whisper's
   English normaliser, and the deviation of matched segment start/end times;

levels 2 and 3 once per mode: short (the first 30 s of each clip), sequential and chunked.
The tokens of level 2 are recorded from the same transcription runs that level 3 scores, so
each backend transcribes each clip once per mode.

Thresholds are per precision, in one TOML file: the defaults ship in
dwkit/data/parity_thresholds.toml and a user file (this repository's: ci/parity.toml)
overrides them. `dwkit parity` and the pytest suite in parity_tests/ both run `ParityGate`.
"""

from __future__ import annotations

import copy
import difflib
import gc
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.errors import ConfigError, DwkitError, ModelError
from dwkit.tomlfile import read_toml_file

LEVELS = ("numerics", "tokens", "transcripts")
MODES = ("short", "sequential", "chunked")
BASELINE_BACKEND = "hf"
BASELINE_PRECISION = "fp32"
THRESHOLDS_FILE = "parity_thresholds.toml"

# Threshold key -> (level, bound). "max": the measured value may not exceed it; "min": may not
# fall below it.
METRICS: dict[str, tuple[str, str]] = {
    "encoder_max_abs": ("numerics", "max"),
    "encoder_cosine_min": ("numerics", "min"),
    "logits_max_abs": ("numerics", "max"),
    "logits_cosine_min": ("numerics", "min"),
    "token_match_min": ("tokens", "min"),
    "wer_max": ("transcripts", "max"),
    "timestamp_max_abs": ("transcripts", "max"),
    "timestamp_mean_abs": ("transcripts", "max"),
}
SIMILAR_SEGMENT = 0.6  # difflib ratio above which two differing segment texts count as the same segment
_SLACK = 1e-9  # float noise allowed on either side of a limit (timestamps are multiples of 0.02)

# The long-form options of the parity runs: greedy on both sides, no fallback and no skip, so
# the two outputs differ only where the numerics make them differ. [longform] overrides these.
PARITY_LONGFORM: dict[str, Any] = {
    "temperatures": (0.0,),
    "compression_ratio_threshold": None,
    "logprob_threshold": None,
    "no_speech_threshold": None,
}

# The built-in long clip: demo.flac, a pause, then these of dwkit.speech.SENTENCES (~60 s).
BUILTIN_SENTENCES = slice(20, 30)
BUILTIN_PAUSE_S = 1.0


# --- configuration -----------------------------------------------------------------------


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_layer(data: dict[str, Any], origin: str) -> None:
    """Refuse unknown keys and non-numeric limits, naming the file and the key."""
    unknown = set(data) - {"thresholds", "longform", "runtime", "validation"}  # validation: dwconvert's
    if unknown:
        raise ConfigError(
            f"{origin}: unknown section(s) {sorted(unknown)}; known: thresholds, longform, runtime"
        )
    for name, table in data.get("thresholds", {}).items():
        where = f"{origin}: [thresholds.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key, value in table.items():
            if key == "precisions":
                if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                    raise ConfigError(f"{where}: precisions must be a list of names")
            elif key == "backend":
                for backend, limits in value.items():
                    _check_limits(limits, f"{where[:-1]}.backend.{backend}]")
            else:
                _check_limits({key: value}, where)


def _check_limits(limits: Any, where: str) -> None:
    if not isinstance(limits, dict):
        raise ConfigError(f"{where} must be a table")
    for key, value in limits.items():
        if key not in METRICS:
            raise ConfigError(f"{where}: unknown threshold {key!r}; known: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")


@dataclass
class ParityConfig:
    """The thresholds, long-form options and runtime options of a gate run.

    `layers` are the parsed files in order (package defaults first); `data` is their merge.
    """

    data: dict[str, Any]
    layers: list[dict[str, Any]]
    sources: list[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> ParityConfig:
        """The package defaults, overridden by `path` when given."""
        default = files("dwkit") / "data" / THRESHOLDS_FILE
        layers = [read_toml_file(default)]
        sources = [str(default)]
        if path is not None:
            path = Path(path).expanduser()
            if not path.is_file():
                raise ConfigError(f"{path}: no such thresholds file")
            layers.append(read_toml_file(path))
            sources.append(str(path))
        for layer, origin in zip(layers, sources):
            _check_layer(layer, origin)
        data: dict[str, Any] = {}
        for layer in layers:
            data = _merge(data, layer)
        config = cls(data, layers, sources)
        config.longform("sequential")  # bad [longform] keys fail now, not after the baseline ran
        return config

    def precision_table(self, precision: str) -> str:
        """Name of the thresholds table that lists `precision`; later files win."""
        owner: dict[str, str] = {}
        for layer in self.layers:
            for name, table in layer.get("thresholds", {}).items():
                for listed in table.get("precisions", []):
                    owner[listed] = name
        if precision not in owner:
            raise ConfigError(
                f"no parity thresholds for precision {precision!r} (known: {', '.join(sorted(owner))}); "
                "add it to a table's `precisions` in your thresholds file"
            )
        return owner[precision]

    def thresholds(self, backend: str, precision: str) -> tuple[str, dict[str, float]]:
        """(table name, limits) for a candidate: its precision's table + that table's backend overrides."""
        name = self.precision_table(precision)
        table = self.data["thresholds"][name]
        limits = {key: float(value) for key, value in table.items() if key in METRICS}
        limits.update({k: float(v) for k, v in table.get("backend", {}).get(backend, {}).items()})
        return name, limits

    def longform(self, mode: str):  # type: ignore[no-untyped-def]
        """LongformOptions for one parity mode (short runs the sequential engine on 30 s)."""
        from dwkit.decoding.options import DecodeOptions
        from dwkit.longform.options import LongformOptions

        settings = {**PARITY_LONGFORM, **self.data.get("longform", {})}
        settings["mode"] = "sequential" if mode == "short" else mode
        if "temperatures" in settings:
            settings["temperatures"] = tuple(settings["temperatures"])
        try:
            if isinstance(settings.get("decode"), dict):
                settings["decode"] = DecodeOptions(**settings["decode"])
            return LongformOptions(**settings)
        except TypeError as exc:
            raise ConfigError(f"[longform] in {self.sources[-1]}: {exc}") from exc

    def runtime_options(self, backend: str) -> dict[str, Any]:
        return dict(self.data.get("runtime", {}).get(backend, {}))


# --- candidates and audio ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One model to gate: `BACKEND:PATH[:PRECISION]`."""

    backend: str
    path: Path
    precision: str | None  # as given; None: the model's own
    spec: str

    @classmethod
    def parse(cls, spec: str) -> Candidate:
        from dwkit.runtimes import BACKENDS

        backend, sep, rest = spec.partition(":")
        if not sep or not rest or backend not in BACKENDS:
            raise ConfigError(
                f"candidate {spec!r}: expected BACKEND:PATH[:PRECISION] with BACKEND one of {', '.join(BACKENDS)}"
            )
        path, precision = rest, None
        head, sep, tail = rest.rpartition(":")
        if sep and head and tail and "/" not in tail and not Path(rest).expanduser().exists():
            path, precision = head, tail
        return cls(backend, Path(path).expanduser(), precision, spec)

    def resolve_precision(self) -> str:
        """The precision it runs at: as given, else hf's fp32, else the manifest's, checked against the backend."""
        from dwkit.manifest import read_manifest
        from dwkit.runtimes import backend_of, get

        if not self.path.is_dir():
            raise ModelError(f"candidate {self.spec!r}: {self.path}: no such model directory")
        found = backend_of(self.path)
        if found != self.backend and not (found == "onnx" and self.backend == "trt"):
            raise ConfigError(f"candidate {self.spec!r}: {self.path} is a {found} model, not {self.backend}")
        known = tuple(getattr(get(self.backend), "PRECISIONS", ()))
        if self.precision is not None:
            if known and self.precision not in known:
                raise ConfigError(
                    f"candidate {self.spec!r}: {self.backend} precision {self.precision!r}; "
                    f"choose one of {', '.join(known)}"
                )
            return self.precision
        if self.backend == "hf":
            return BASELINE_PRECISION
        stored = (read_manifest(self.path) or {}).get("precision")
        if not stored:
            raise ConfigError(
                f"candidate {self.spec!r}: {self.path} does not record its precision; "
                f"give it as {self.backend}:PATH:PRECISION"
            )
        return str(stored)


@dataclass
class Clip:
    """Audio both sides transcribe; `spoken` is its known text, when there is one."""

    name: str
    samples: np.ndarray
    spoken: str | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / 16000


@dataclass
class AudioSet:
    """The clips of a gate run: `short` for the short mode and the numerics (their first
    30 s), `long` for the sequential and chunked modes."""

    short: list[Clip]
    long: list[Clip]

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> AudioSet:
        """The same files for every mode (short mode takes the first 30 s of each)."""
        from dwkit.audio import load_audio

        clips = [Clip(str(path), load_audio(str(path))) for path in paths]
        if not clips:
            raise ConfigError("no audio files given")
        return cls(clips, clips)

    @classmethod
    def builtin(cls, cache_dir: Path | None = None) -> AudioSet:
        """demo.flac (15 s) for the short mode; for long-form, demo.flac, a pause and ten more
        sentences spoken by espeak-ng (~60 s, three windows), or without espeak-ng demo.flac
        four times with pauses. The sentences are ones the bundled tiny.en transcribes
        correctly in both long-form modes, so the baseline is right where candidates are checked.
        """
        from dwkit.audio import load_audio
        from dwkit.bundled import default_cache_dir
        from dwkit.speech import SENTENCES, cached_speech, espeak_available, read_wav

        data = files("dwkit") / "data"
        demo = load_audio(str(data / "demo.flac"))
        demo_text = (data / "demo.txt").read_text(encoding="utf-8").strip()
        pause = np.zeros(int(BUILTIN_PAUSE_S * 16000), dtype=np.float32)
        if espeak_available():
            sentences = list(SENTENCES[BUILTIN_SENTENCES])
            cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            extra = read_wav(cached_speech(sentences, cache / "speech"))
            pieces, texts, name = (
                [demo, pause, extra],
                [demo_text, *sentences],
                "built-in long (demo.flac + espeak-ng)",
            )
        else:
            pieces, texts = [demo, pause, demo, pause, demo, pause, demo], [demo_text] * 4
            name = "built-in long (demo.flac x4)"
        long_clip = Clip(name, np.concatenate(pieces).astype(np.float32), " ".join(texts))
        return cls([Clip("built-in short (demo.flac)", demo, demo_text)], [long_clip])

    def for_mode(self, mode: str) -> list[Clip]:
        return self.short if mode == "short" else self.long


# --- results -----------------------------------------------------------------------------


@dataclass
class Check:
    """One measured value against its threshold (None limit: reported, not gated)."""

    metric: str
    value: float | None  # None: this backend cannot expose it ('n/a')
    limit: float | None
    note: str = ""

    @property
    def bound(self) -> str:
        return METRICS[self.metric][1]

    @property
    def passed(self) -> bool:
        if self.value is None or self.limit is None:
            return True
        if math.isnan(self.value):
            return False
        if self.bound == "max":
            return self.value <= self.limit + _SLACK
        return self.value >= self.limit - _SLACK

    def describe(self) -> str:
        """'wer_max: 0.0435 > 0.02 (over by 0.0235)' for a failure; the value otherwise."""
        if self.value is None:
            return f"{self.metric}: n/a" + (f" ({self.note})" if self.note else "")
        text = f"{self.metric}: {_fmt(self.value)}"
        if self.limit is not None:
            if self.passed:
                text += f" {'<=' if self.bound == 'max' else '>='} {_fmt(self.limit)}"
            else:
                by = self.value - self.limit if self.bound == "max" else self.limit - self.value
                side = "over" if self.bound == "max" else "under"
                op = ">" if self.bound == "max" else "<"
                text += f" {op} {_fmt(self.limit)} ({side} by {_fmt(by)})"
        return text + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": _json_number(self.value),
            "limit": self.limit,
            "bound": self.bound,
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class LevelResult:
    """One candidate x level x mode: the checks made and what was measured."""

    candidate: str
    level: str
    mode: str | None  # None: numerics, which do not depend on the mode
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.level if self.mode is None else f"{self.level}[{self.mode}]"

    @property
    def passed(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks)

    def failures(self) -> list[str]:
        """One line per failed threshold (or the error), naming candidate, level and mode."""
        where = f"{self.candidate} {self.level}" + (f" {self.mode}" if self.mode else "")
        if self.error is not None:
            return [f"FAIL {where}: error: {self.error}"]
        return [f"FAIL {where}: {check.describe()}" for check in self.checks if not check.passed]

    def summary(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        return "; ".join(check.describe() for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "level": self.level,
            "mode": self.mode,
            "passed": self.passed,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "checks": [check.to_dict() for check in self.checks],
            "details": self.details,
        }


@dataclass
class CandidateReport:
    candidate: Candidate
    label: str
    precision: str | None
    table: str | None  # the thresholds table used
    limits: dict[str, float]
    results: list[LevelResult]
    transcripts: dict[str, list[str]] = field(default_factory=dict)  # mode -> text per clip
    load_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.candidate.spec,
            "label": self.label,
            "backend": self.candidate.backend,
            "path": str(self.candidate.path),
            "precision": self.precision,
            "thresholds_table": self.table,
            "thresholds": self.limits,
            "load_seconds": round(self.load_seconds, 3),
            "passed": self.passed,
            "transcripts": self.transcripts,
            "results": [result.to_dict() for result in self.results],
        }


@dataclass
class ParityReport:
    model: str
    modes: tuple[str, ...]
    audio: AudioSet
    config_sources: list[str]
    baseline: dict[str, Any]
    candidates: list[CandidateReport]

    @property
    def results(self) -> list[LevelResult]:
        return [result for candidate in self.candidates for result in candidate.results]

    @property
    def passed(self) -> bool:
        return all(candidate.passed for candidate in self.candidates)

    def failures(self) -> list[str]:
        return [line for result in self.results for line in result.failures()]

    def to_dict(self) -> dict[str, Any]:
        from dwkit import __version__

        return {
            "dwkit_version": __version__,
            "passed": self.passed,
            "failures": self.failures(),
            "model": self.model,
            "baseline": self.baseline,
            "modes": list(self.modes),
            "audio": {
                "short": [_clip_dict(c) for c in self.audio.short],
                "long": [_clip_dict(c) for c in self.audio.long],
            },
            "thresholds_files": self.config_sources,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
        }

    def table(self) -> str:
        """A plain-text table: one row per candidate x level x mode."""
        rows = [("candidate", "level", "mode", "result", "measured")]
        for result in self.results:
            status = "ERROR" if result.error else ("PASS" if result.passed else "FAIL")
            rows.append((result.candidate, result.level, result.mode or "-", status, result.summary()))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4]
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * 8)
        return "\n".join(lines)

    def junit_xml(self) -> str:
        """JUnit XML: a testsuite per candidate, a testcase per level x mode."""
        suites = ET.Element("testsuites", name="dwkit parity")
        totals = {"tests": 0, "failures": 0, "errors": 0}
        for candidate in self.candidates:
            counts = {
                "tests": len(candidate.results),
                "failures": sum(1 for r in candidate.results if r.error is None and not r.passed),
                "errors": sum(1 for r in candidate.results if r.error is not None),
            }
            suite = ET.SubElement(
                suites,
                "testsuite",
                name=f"parity {candidate.label}",
                time=f"{sum(r.seconds for r in candidate.results):.3f}",
                **{k: str(v) for k, v in counts.items()},
            )
            ET.SubElement(
                ET.SubElement(suite, "properties"), "property", name="spec", value=candidate.candidate.spec
            )
            for result in candidate.results:
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=f"parity.{candidate.label}",
                    name=result.name,
                    time=f"{result.seconds:.3f}",
                )
                if result.error is not None:
                    ET.SubElement(case, "error", message=result.error, type="error").text = result.error
                elif not result.passed:
                    lines = result.failures()
                    ET.SubElement(
                        case, "failure", message="; ".join(lines), type="threshold"
                    ).text = "\n".join(lines)
                ET.SubElement(case, "system-out").text = result.summary()
            for key in totals:
                totals[key] += counts[key]
        for key, value in totals.items():
            suites.set(key, str(value))
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _fmt(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if value == 0:
        return "0"
    return f"{value:.6g}" if abs(value) >= 1e-2 else f"{value:.3g}"


def _clip_dict(clip: Clip) -> dict[str, Any]:
    return {"name": clip.name, "duration_s": round(clip.duration, 3), "spoken": clip.spoken}


def _json_number(value: float | None) -> float | str | None:
    if value is None:
        return None
    return value if math.isfinite(value) else str(value)


# --- measures ----------------------------------------------------------------------------


def window_agreement(
    reference: Sequence[Sequence[list[int]]], candidate: Sequence[Sequence[list[int]]]
) -> dict[str, Any]:
    """Exact-match rate of decoded windows (per clip, in decode order) and the first divergence.

    A window one side decoded and the other did not counts as a mismatch.
    """
    from dwkit.compare import first_divergence

    total = matched = 0
    first: dict[str, int] | None = None
    for clip, (ref, cand) in enumerate(zip(reference, candidate)):
        for window in range(max(len(ref), len(cand))):
            total += 1
            a = list(ref[window]) if window < len(ref) else []
            b = list(cand[window]) if window < len(cand) else []
            if window < len(ref) and window < len(cand) and a == b:
                matched += 1
            elif first is None:
                first = {"clip": clip, "window": window, "token": first_divergence(a, b) or 0}
    return {
        "windows": total,
        "windows_equal": matched,
        "match_rate": matched / total if total else 1.0,
        "first_divergence": first,
    }


def timestamp_deviation(reference: Sequence[Any], candidate: Sequence[Any]) -> dict[str, Any]:
    """Abs differences of start and end times of matched segments.

    Segments are matched in order on their normalised text (difflib); where a run of segments
    differs in text but not in number, they are paired one to one if their texts are similar. Segments left unmatched are
    counted, not measured. No match at all while both sides have segments gives inf.
    """
    from dwkit.metrics import normalize

    a = [normalize(s.text) for s in reference]
    b = [normalize(s.text) for s in candidate]
    pairs: list[tuple[int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs.extend(zip(range(i1, i2), range(j1, j2)))
        elif tag == "replace" and i2 - i1 == j2 - j1:  # same count, some words differ
            pairs.extend(
                (i, j)
                for i, j in zip(range(i1, i2), range(j1, j2))
                if difflib.SequenceMatcher(None, a[i], b[j]).ratio() >= SIMILAR_SEGMENT
            )
    diffs = [
        d
        for i, j in pairs
        for d in (abs(reference[i].start - candidate[j].start), abs(reference[i].end - candidate[j].end))
    ]
    if diffs:
        worst, mean = max(diffs), sum(diffs) / len(diffs)
    else:
        worst = mean = math.inf if (reference or candidate) else 0.0
    return {
        "max_abs": worst,
        "mean_abs": mean,
        "matched": len(pairs),
        "unmatched": len(reference) + len(candidate) - 2 * len(pairs),
        "diffs": diffs,
    }


class _Recorder:
    """A backend that also keeps the tokens of every hypothesis it generates, in order."""

    def __init__(self, backend: Any):
        self._backend = backend
        self.windows: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def generate(self, enc: Any, prompts: list[list[int]], opts: Any) -> list[Any]:
        hypotheses = self._backend.generate(enc, prompts, opts)
        self.windows.extend(list(h.tokens) for h in hypotheses)
        return hypotheses


@dataclass
class ModeRun:
    """One backend's transcription of every clip in one mode."""

    transcripts: list[Any]  # dwkit.results.Transcript per clip
    windows: list[list[list[int]]]  # per clip, the tokens of each decoded window
    seconds: float


def _no_timestamps_prompt(info: Any) -> list[int]:
    """The prompt dwkit.compare uses: <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>."""
    prompt = [info.sot]
    if info.multilingual and info.transcribe is not None:
        prompt += [info.lang_to_id.get("<|en|>", next(iter(info.lang_to_id.values()))), info.transcribe]
    return prompt + [info.no_timestamps]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, DwkitError) else f"{type(exc).__name__}: {text}"


# --- the gate ------------------------------------------------------------------------------


ProgressFn = Callable[[str], None]  # called with a description as each step starts


class ParityGate:
    """The transformers baseline on `model_dir` (computed once, lazily) and checks of candidates."""

    def __init__(
        self,
        model_dir: str | Path,
        audio: AudioSet | None = None,
        modes: Sequence[str] = MODES,
        config: ParityConfig | None = None,
        device: str = "cpu",
        threads: int = 0,
        progress: ProgressFn | None = None,
    ):
        from dwkit.runtimes import backend_of

        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ConfigError(f"modes {list(modes)}: choose from {', '.join(MODES)}")
        self.model_dir = Path(model_dir).expanduser()
        if backend_of(self.model_dir) != BASELINE_BACKEND:
            raise ModelError(f"{self.model_dir}: the baseline must be a transformers checkpoint")
        self.audio = audio if audio is not None else AudioSet.builtin()
        self.modes = tuple(modes)
        self.config = config or ParityConfig.load()
        self.device = device
        self.threads = threads
        self.progress = progress
        self._baseline: Any = None
        self._tokenizer: Any = None
        self._runs: dict[str, ModeRun] = {}
        self._numerics: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._labels: set[str] = set()

    # -- baseline ---------------------------------------------------------------------------

    def _step(self, description: str) -> None:
        if self.progress:
            self.progress(description)

    def _runtime(self, backend: str, precision: str | None):  # type: ignore[no-untyped-def]
        from dwkit.runtimes.base import RuntimeConfig

        return RuntimeConfig(
            device=self.device,
            precision=precision,
            threads=self.threads,
            options=self.config.runtime_options(backend),
        )

    @property
    def baseline(self) -> Any:
        if self._baseline is None:
            from dwkit.runtimes import load
            from dwkit.tokenizer import Tokenizer

            self._step("baseline hf:fp32 load")
            self._baseline = load(
                self.model_dir, BASELINE_BACKEND, self._runtime(BASELINE_BACKEND, BASELINE_PRECISION)
            )
            self._tokenizer = Tokenizer.from_model_dir(self.model_dir, self._baseline.info)
        return self._baseline

    def baseline_run(self, mode: str) -> ModeRun:
        if mode not in self._runs:
            backend = self.baseline
            self._step(f"baseline hf:fp32 {mode}")
            self._runs[mode] = self._transcribe(backend, self._tokenizer, mode)
        return self._runs[mode]

    def baseline_numerics(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(encoder states, first-step logits) of the baseline for each clip's first window."""
        if self._numerics is None:
            backend = self.baseline
            prompt = _no_timestamps_prompt(backend.info)
            self._numerics = []
            for mel in self._mels(backend.info.n_mels):
                enc = backend.encode(mel)
                self._numerics.append((backend.encoder_array(enc), backend.next_token_logits(enc, [prompt])))
        return self._numerics

    def baseline_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "backend": BASELINE_BACKEND,
            "precision": BASELINE_PRECISION,
            "path": str(self.model_dir),
        }
        summary["transcripts"] = {mode: [t.text for t in run.transcripts] for mode, run in self._runs.items()}
        summary["seconds"] = {mode: round(run.seconds, 3) for mode, run in self._runs.items()}
        return summary

    def _mels(self, n_mels: int) -> list[np.ndarray]:
        from dwkit.features import N_SAMPLES, log_mel

        return [log_mel(clip.samples[:N_SAMPLES], n_mels)[None] for clip in self.audio.short]

    def _transcribe(self, backend: Any, tokenizer: Any, mode: str) -> ModeRun:
        from dwkit.features import N_SAMPLES
        from dwkit.transcriber import Transcriber

        recorder = _Recorder(backend)
        transcriber = Transcriber(recorder, tokenizer, self.config.longform(mode))  # type: ignore[arg-type]
        transcripts, windows = [], []
        started = time.perf_counter()
        for clip in self.audio.for_mode(mode):  # one at a time: window lists stay aligned per clip
            recorder.windows = []
            samples = clip.samples[:N_SAMPLES] if mode == "short" else clip.samples
            transcripts.append(transcriber.transcribe(samples))
            windows.append(recorder.windows)
        return ModeRun(transcripts, windows, time.perf_counter() - started)

    # -- candidates -------------------------------------------------------------------------

    def label(self, candidate: Candidate, precision: str | None) -> str:
        """`backend:dirname:precision`, made unique within this gate."""
        base = f"{candidate.backend}:{candidate.path.name}:{precision or '?'}"
        label, n = base, 1
        while label in self._labels:
            n += 1
            label = f"{base}#{n}"
        self._labels.add(label)
        return label

    def check(self, candidate: Candidate) -> CandidateReport:
        """Every level and mode of one candidate; a candidate that fails to load or run fails with its error."""
        from dwkit.runtimes import load
        from dwkit.tokenizer import Tokenizer

        precision = candidate.resolve_precision()
        table, limits = self.config.thresholds(candidate.backend, precision)
        label = self.label(candidate, precision)
        report = CandidateReport(candidate, label, precision, table, limits, [])
        self.baseline  # noqa: B018 - the baseline loads (and its errors surface) before any candidate
        self._step(f"{label} load")
        started = time.perf_counter()
        try:
            backend = load(
                candidate.path, candidate.backend, self._runtime(candidate.backend, candidate.precision)
            )
            tokenizer = Tokenizer.from_model_dir(candidate.path, backend.info)
            self._check_same_model(backend)
        except Exception as exc:  # noqa: BLE001 - a candidate that does not load fails the gate, it does not stop it
            error = f"could not load: {_one_line(exc)}"
            report.results = [LevelResult(label, level, mode, error=error) for level, mode in self.cases()]
            return report
        report.load_seconds = time.perf_counter() - started
        try:
            report.results.append(self._check_numerics(label, backend, limits))
            for mode in self.modes:
                tokens, transcripts, texts = self._check_mode(label, backend, tokenizer, mode, limits)
                report.results += [tokens, transcripts]
                if texts is not None:
                    report.transcripts[mode] = texts
        finally:
            close = getattr(backend, "close", None)
            if callable(close):
                close()
            del backend
            gc.collect()
        return report

    def cases(self) -> list[tuple[str, str | None]]:
        """(level, mode) of every result a candidate gets, in report order."""
        return [("numerics", None)] + [
            (level, mode) for mode in self.modes for level in ("tokens", "transcripts")
        ]

    def _check_same_model(self, backend: Any) -> None:
        ref, cand = self.baseline.info, backend.info
        if (ref.n_mels, ref.vocab_size) != (cand.n_mels, cand.vocab_size):
            raise ModelError(
                f"not a conversion of the baseline model: n_mels/vocab {cand.n_mels}/{cand.vocab_size}, "
                f"baseline {ref.n_mels}/{ref.vocab_size}"
            )

    def _check_numerics(self, label: str, backend: Any, limits: dict[str, float]) -> LevelResult:
        from dwkit.compare import cosine

        result = LevelResult(label, "numerics", None)
        started = time.perf_counter()
        try:
            reference = self.baseline_numerics()
            self._step(f"{label} numerics")
            prompt = _no_timestamps_prompt(self.baseline.info)
            enc_abs, enc_cos, log_abs, log_cos = [], [], [], []
            enc_na = log_na = ""
            for mel, (ref_states, ref_logits) in zip(self._mels(backend.info.n_mels), reference):
                enc = backend.encode(mel)
                try:
                    states = np.asarray(backend.encoder_array(enc), dtype=np.float32)
                    if states.shape != ref_states.shape:
                        raise ModelError(
                            f"encoder states of shape {states.shape}, baseline {ref_states.shape}"
                        )
                    enc_abs.append(float(np.abs(states - ref_states).max()))
                    enc_cos.append(cosine(states, ref_states))
                except NotImplementedError as exc:
                    enc_na = _first_sentence(exc)
                try:
                    logits = np.asarray(backend.next_token_logits(enc, [prompt]), dtype=np.float32)
                    log_abs.append(float(np.abs(logits - ref_logits).max()))
                    log_cos.append(cosine(logits, ref_logits))
                except NotImplementedError as exc:
                    log_na = _first_sentence(exc)
            measured = {
                "encoder_max_abs": (max(enc_abs) if enc_abs else None, enc_na),
                "encoder_cosine_min": (min(enc_cos) if enc_cos else None, enc_na),
                "logits_max_abs": (max(log_abs) if log_abs else None, log_na),
                "logits_cosine_min": (min(log_cos) if log_cos else None, log_na),
            }
            result.checks = [
                Check(metric, value, limits.get(metric)) for metric, (value, _) in measured.items()
            ]
            result.details = {"clips": len(self.audio.short), "prompt": prompt}
            not_available = {m: note for m, (value, note) in measured.items() if value is None}
            if not_available:  # why a metric is 'n/a': the backend's own explanation
                result.details["not_available"] = not_available
        except Exception as exc:  # noqa: BLE001 - recorded as this level's error
            result.error = _one_line(exc)
        result.seconds = time.perf_counter() - started
        return result

    def _check_mode(
        self, label: str, backend: Any, tokenizer: Any, mode: str, limits: dict[str, float]
    ) -> tuple[LevelResult, LevelResult, list[str] | None]:
        from dwkit.metrics import wer

        tokens = LevelResult(label, "tokens", mode)
        transcripts = LevelResult(label, "transcripts", mode)
        try:
            reference = self.baseline_run(mode)
            self._step(f"{label} {mode}")
            run = self._transcribe(backend, tokenizer, mode)
        except Exception as exc:  # noqa: BLE001 - recorded as both levels' error
            tokens.error = transcripts.error = _one_line(exc)
            return tokens, transcripts, None
        tokens.seconds = transcripts.seconds = run.seconds / 2
        agreement = window_agreement(reference.windows, run.windows)
        note = f"{agreement['windows_equal']}/{agreement['windows']} windows equal"
        first = agreement["first_divergence"]
        if first is not None:
            note += (
                f", first divergence: clip {first['clip']} window {first['window']} token {first['token']}"
            )
        tokens.checks = [
            Check("token_match_min", agreement["match_rate"], limits.get("token_match_min"), note)
        ]
        tokens.details = agreement

        ref_text = " ".join(t.text for t in reference.transcripts)
        cand_text = " ".join(t.text for t in run.transcripts)
        deviation: dict[str, Any] = {"diffs": []}
        matched = unmatched = 0
        for ref, cand in zip(reference.transcripts, run.transcripts):
            clip_dev = timestamp_deviation(ref.segments, cand.segments)
            deviation["diffs"] += clip_dev["diffs"]
            matched += clip_dev["matched"]
            unmatched += clip_dev["unmatched"]
            if math.isinf(clip_dev["max_abs"]):
                deviation["no_match"] = True
        diffs = deviation["diffs"]
        worst = math.inf if deviation.get("no_match") else (max(diffs) if diffs else 0.0)
        mean = math.inf if deviation.get("no_match") else (sum(diffs) / len(diffs) if diffs else 0.0)
        seg_note = f"{matched} segments matched, {unmatched} unmatched"
        spoken = self._spoken_wer(mode, reference, run)
        wer_note = (
            f"vs spoken text: baseline {spoken['baseline_wer_vs_spoken']:.1%}, "
            f"candidate {spoken['candidate_wer_vs_spoken']:.1%}"
            if spoken
            else ""
        )
        transcripts.checks = [
            Check("wer_max", wer(ref_text, cand_text), limits.get("wer_max"), wer_note),
            Check("timestamp_max_abs", worst, limits.get("timestamp_max_abs"), seg_note),
            Check("timestamp_mean_abs", mean, limits.get("timestamp_mean_abs")),
        ]
        transcripts.details = {
            "baseline_seconds": round(reference.seconds, 3),
            "candidate_seconds": round(run.seconds, 3),
            "segments_matched": matched,
            "segments_unmatched": unmatched,
            **spoken,
        }
        return tokens, transcripts, [t.text for t in run.transcripts]

    def _spoken_wer(self, mode: str, reference: ModeRun, run: ModeRun) -> dict[str, float]:
        """Both sides' WER against the known spoken text (information, not gated)."""
        from dwkit.metrics import wer

        clips = self.audio.for_mode(mode)
        truncated = mode == "short" and any(clip.duration > 30 for clip in clips)
        if truncated or any(clip.spoken is None for clip in clips):
            return {}
        spoken = " ".join(clip.spoken or "" for clip in clips)
        return {
            "baseline_wer_vs_spoken": wer(spoken, " ".join(t.text for t in reference.transcripts)),
            "candidate_wer_vs_spoken": wer(spoken, " ".join(t.text for t in run.transcripts)),
        }


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.split(". ")[0][:120] or type(exc).__name__


def run_parity(
    model_dir: str | Path,
    candidates: Sequence[Candidate | str],
    audio: AudioSet | None = None,
    modes: Sequence[str] = MODES,
    config: ParityConfig | None = None,
    device: str = "cpu",
    threads: int = 0,
    progress: bool = False,
) -> ParityReport:
    """Gate every candidate against the transformers baseline on `model_dir`.

    Candidate specs are all checked (syntax, directory, backend, precision, thresholds) before
    anything runs, so a typo costs a second, not a baseline run.
    """
    parsed = [c if isinstance(c, Candidate) else Candidate.parse(c) for c in candidates]
    if not parsed:
        raise ConfigError("no candidates: give at least one BACKEND:PATH[:PRECISION]")
    config = config or ParityConfig.load()
    for candidate in parsed:
        config.thresholds(candidate.backend, candidate.resolve_precision())
        _check_available(candidate.backend)
    bar = _progress_bar(1 + len(modes) + len(parsed) * (2 + len(modes))) if progress else None
    gate = ParityGate(model_dir, audio, modes, config, device, threads, _advance(bar) if bar else None)
    try:
        reports = [gate.check(candidate) for candidate in parsed]
    finally:
        if bar is not None:
            bar.close()
    return ParityReport(
        model=str(gate.model_dir),
        modes=gate.modes,
        audio=gate.audio,
        config_sources=config.sources,
        baseline=gate.baseline_summary(),
        candidates=reports,
    )


def _check_available(backend: str) -> None:
    from dwkit.errors import BackendUnavailable
    from dwkit.runtimes import get

    reason = get(backend).unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend {backend}: {reason}")


def _progress_bar(total: int):  # type: ignore[no-untyped-def]
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="parity", file=sys.stderr, leave=False, unit="step", dynamic_ncols=True)


def _advance(bar: Any) -> ProgressFn:
    """A progress callback: each new step completes the previous one on the bar."""
    started = [False]

    def step(description: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_description_str(f"parity: {description}")

    return step


# --- candidates built here (parity_tests with nothing configured) --------------------------

# Per format, the precision parity_tests converts to when it builds its own candidates: the
# most faithful one each runtime runs on a CPU (whisper.cpp 1.8.5 cannot run f32 files).
SELF_TEST_PRECISIONS = {"ct2": "float32", "onnx": "fp32", "ggml": "f16", "trt": "fp16"}


def converted_candidate(
    model_dir: str | Path, fmt: str, precision: str, cache_dir: Path | None = None
) -> Candidate:
    """`model_dir` converted to `fmt` at `precision` (no validation: the gate is the check),
    cached under `<cache>/parity/` while the source weights, dwkit and the converter are
    unchanged. Raises BackendUnavailable when this machine cannot convert to or run `fmt`."""
    import hashlib

    from dwkit import __version__
    from dwkit.bundled import cache_lock, code_digest, default_cache_dir
    from dwkit.converters import FORMATS, convert, format_module

    _check_available(fmt)
    format_module(fmt)  # a missing library fails here, before anything is hashed
    model_dir = Path(model_dir)
    key = hashlib.sha256(f"{__version__}:{fmt}:{precision}".encode())
    key.update(code_digest(FORMATS[fmt].module).encode())
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.json")):
        stat = path.stat()
        key.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / "parity" / f"{model_dir.name}-{fmt}-{precision}-{key.hexdigest()[:12]}"
    with cache_lock(out.parent / f".{out.name}.lock"):
        if not (out / "dwkit.json").is_file():
            opts = {"progress": False} if "progress" in FORMATS[fmt].options else {}
            convert(model_dir, out, fmt, precision, validate=False, overwrite=True, **opts)
    return Candidate(fmt, out, precision, f"{fmt}:{out}:{precision}")
