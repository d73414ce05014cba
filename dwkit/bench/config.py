"""What one benchmark run measures: the model, the systems, modes, audio and settings.

The same settings come from command-line flags or a TOML file (`benchmarks/configs/*.toml`,
keys named like the flags with `_` for `-`); flags given on the command line win.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dwkit.bench.goal import Goal
from dwkit.errors import ConfigError
from dwkit.longform.options import MODES
from dwkit.runtimes.pair import PairSpec, Side, is_pair
from dwkit.tomlfile import read_toml_file

BASELINE = ("hf", "fp32")
# A spec without a precision runs at this one (the example line: hf,ct2:int8,onnx:fp32,ggml:q8_0).
# Synthetic models never emit end-of-text sensibly: decode this many tokens per window instead.
DEFAULT_SYNTHETIC_TOKENS = 16
DEFAULT_AUDIO_SECONDS = 60.0
DRAFT_SUFFIX = "+draft"
STUDENT = "student"  # `draft = "student"`: a distil-style student of the model (dwkit.synthetic)
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")  # as dwkit.config's `device`


@dataclass(frozen=True)
class Peer:
    """A reference system run beside dwkit on the same model files and audio."""

    mode: str  # the long-form mode it is compared in
    module: str  # what must be importable for it to run here
    reads: str  # the backend whose converted directory it loads
    default: bool  # run with `peers = true` (the others only when named)
    devices: tuple[str, ...] = ("cpu", "cuda")  # where it runs ("cuda" covers cuda:N)


PEERS = {
    "faster-whisper": Peer("sequential", "faster_whisper", "ct2", default=True),
    "transformers-pipeline": Peer("chunked", "transformers", "hf", default=True),
    # whisper.cpp's own whisper_full (pywhispercpp) on each ggml file asked for: its decoding
    # rules are not transformers', so it is a speed reference, not a parity one. pywhispercpp's
    # wheels are CPU builds.
    "whisper.cpp": Peer("sequential", "pywhispercpp", "ggml", default=False, devices=("cpu",)),
    # OpenVINO GenAI's WhisperPipeline on its own export of the checkpoint (bench/openvino_genai.py),
    # int8 weights: named only, as its export is a conversion of its own (minutes at full size).
    "openvino-genai": Peer("sequential", "openvino_genai", "openvino-genai", default=False, devices=("cpu",)),
}


def device_kind(device: str) -> str:
    """ "cpu" or "cuda" (for cuda and cuda:N): what backend and peer declarations list."""
    return "cuda" if device.startswith("cuda") else device


@dataclass(frozen=True)
class SystemSpec:
    """One dwkit backend at one precision, e.g. `ct2:int8`."""

    backend: str
    precision: str
    draft: bool = False  # `hf:fp32+draft`: speculative decoding with the run's draft model

    @property
    def label(self) -> str:
        if is_pair(self.backend):  # precision is the sides' ("bf16+int8"); the label names both
            return PairSpec.parse(self.backend).label
        return f"{self.backend} {self.precision}" + (f" {DRAFT_SUFFIX}" if self.draft else "")

    @property
    def text(self) -> str:
        if is_pair(self.backend):
            return self.backend
        return f"{self.backend}:{self.precision}" + (DRAFT_SUFFIX if self.draft else "")

    @property
    def sides(self) -> list[tuple[str, str]]:
        """(backend, precision) of each backend the system runs: one, or a pair's two sides."""
        if not is_pair(self.backend):
            return [(self.backend, self.precision)]
        pair = PairSpec.parse(self.backend)
        return [(side.backend, side.resolved_precision()) for side in (pair.encoder, pair.decoder)]

    @property
    def is_baseline(self) -> bool:
        return (self.backend, self.precision) == BASELINE and not self.draft


def parse_backends(specs: str | list[str]) -> list[SystemSpec]:
    """`hf,ct2:int8,onnx:fp32,ggml:q8_0` -> specs, the transformers fp32 baseline first.

    A spec ending in `+draft` (`hf:fp32+draft`) decodes with the run's draft model.

    Names and precisions are checked against the backend registry and each backend's own
    precision names, so a typo fails before anything is converted or run.
    """
    from dwkit.runtimes import names
    from dwkit.runtimes import spec as declaration

    items = specs.split(",") if isinstance(specs, str) else [s for part in specs for s in part.split(",")]
    parsed: list[SystemSpec] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        drafted = item.endswith(DRAFT_SUFFIX)
        if is_pair(item.removesuffix(DRAFT_SUFFIX)):  # an encoder/decoder pair, hf:bf16+ct2:int8
            parsed.append(pair_system(item, drafted))
            continue
        name, _, precision = item.removesuffix(DRAFT_SUFFIX).partition(":")
        if name not in names():
            raise ConfigError(
                f"backend spec {item!r}: unknown backend {name!r}; choose one of {', '.join(names())}"
            )
        declared = declaration(name)
        precision = (
            precision or declared.bench_precision or declared.default_precision or declared.precisions[0]
        )
        valid = declared.accepted_precisions
        if precision not in valid:
            raise ConfigError(
                f"backend spec {item!r}: unknown {name} precision {precision!r}; choose one of {', '.join(valid)}"
            )
        spec = SystemSpec(name, precision, drafted)
        if spec not in parsed:
            parsed.append(spec)
    baseline = SystemSpec(*BASELINE)
    return [baseline] + [s for s in parsed if s != baseline]


def pair_system(item: str, drafted: bool) -> SystemSpec:
    """An encoder/decoder pair as a system: each side at its own precision (runtimes/pair.py)."""
    if drafted:
        raise ConfigError(f"backend spec {item!r}: a pair cannot decode with a draft model")
    try:
        pair = PairSpec.parse(item)
    except ConfigError as exc:
        raise ConfigError(f"backend spec {item!r}: {exc}") from exc
    sides = (pair.encoder, pair.decoder)
    full = PairSpec.of(*(Side(s.backend, s.resolved_precision()) for s in sides))
    return SystemSpec(full.text, "+".join(s.resolved_precision() for s in sides))


@dataclass
class BenchConfig:
    """Everything a run depends on; recorded in the result JSON."""

    model: str | None = None  # transformers dir, hub id, or a bundled name (tiny.en, base)
    synthetic_model: str | None = None  # a dwkit.synthetic preset, e.g. distil-large-v3.5
    backends: list[SystemSpec] = field(default_factory=lambda: parse_backends("hf"))
    modes: tuple[str, ...] = MODES
    audio: list[Path] = field(default_factory=list)
    synthetic_audio: float | None = None  # seconds of espeak-ng speech (default when no audio)
    repeat: int = 3
    threads: int = 0  # 0: every usable core
    output: Path = Path("bench-results")
    name: str | None = None  # file stem of the outputs; default: from the model
    tokens_per_window: int | None = None  # force exactly N decoded tokens per window
    batch_size: int = 8
    language: str = "en"
    peers: bool | list[str] = True  # true: PEERS' defaults, where installed; or a list of names
    floor: bool = True  # measure the fp32 / bf16 matmul floor
    warmup: bool = True
    interleave: bool = True  # repeats round-robin across the systems of a mode (all loaded at once)
    retry_starved: bool = True  # not interleaved: run a row again when a busy machine starved it
    cache_dir: Path | None = None  # converted models; default ~/.cache/dwkit (or $DWKIT_CACHE)
    timeout_s: float = 3600.0  # per worker job
    device: str = "cpu"  # cpu, cuda or cuda:N: every dwkit backend and peer runs there
    # The whole run's wall-clock seconds: a job that would start after it is skipped, and each
    # job's timeout is cut to what is left, so a prepared run (benchmarks/gpu_bench.sh) ends in
    # time with every row it finished written. None: no limit.
    budget_s: float | None = None
    # The draft model of `+draft` specs: "student" (decoder layers first and last of the model,
    # distil-whisper's initialisation; on hf at an hf spec's precision), a backend spec such as
    # "ct2:int8" (the model converted, a quantised copy), or a directory (its own backend and
    # precision); the encoder states are shared where the weights agree.
    draft: str | None = None
    draft_tokens: int = 5
    draft_adaptive: bool = False
    goal: Goal | None = None  # what this benchmark should show (benchmarks/goals/*.toml)
    command: str | None = None  # how the run was started, for the record

    def __post_init__(self) -> None:
        if bool(self.model) == bool(self.synthetic_model):
            raise ConfigError("give exactly one of --model and --synthetic-model")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ConfigError(f"modes {', '.join(unknown) or '(none)'}: choose from {', '.join(MODES)}")
        if self.repeat < 1:
            raise ConfigError("--repeat must be at least 1")
        if not isinstance(self.peers, bool) and (bad := [p for p in self.peers if p not in PEERS]):
            raise ConfigError(f"peers {', '.join(bad)}: choose from {', '.join(PEERS)} (or true / false)")
        if self.tokens_per_window is not None and not 1 <= self.tokens_per_window <= 200:
            raise ConfigError("--tokens-per-window must be between 1 and 200")
        if self.synthetic_audio is not None and self.synthetic_audio <= 0:
            raise ConfigError("--synthetic-audio must be a positive number of seconds")
        if self.audio and self.synthetic_audio is not None:
            raise ConfigError("give --audio or --synthetic-audio, not both")
        if any(s.draft for s in self.backends) and not self.draft:
            raise ConfigError('a +draft backend spec needs a draft model: draft = "student" or a directory')
        if self.draft_tokens < 1:
            raise ConfigError("draft_tokens must be at least 1")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ConfigError("--budget must be a positive number of seconds")
        if self.budget_s is not None and self.interleave and self.repeat > 1:
            raise ConfigError("--budget runs one system at a time: add --no-interleave (or --repeat 1)")
        self._check_device()
        if self.synthetic_model and self.tokens_per_window is None:
            self.tokens_per_window = DEFAULT_SYNTHETIC_TOKENS
        if not self.audio and self.synthetic_audio is None:
            self.synthetic_audio = DEFAULT_AUDIO_SECONDS
        for path in self.audio:
            if not Path(path).is_file():
                raise ConfigError(f"{path}: no such audio file")

    def _check_device(self) -> None:
        """Every backend spec and named peer must run on `device`, at its precision: the
        backends' own declarations say so (devices, GPU-only precisions); nothing is imported."""
        from dwkit.runtimes import spec as declaration

        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"--device {self.device!r}: use cpu, cuda or cuda:N")
        kind = device_kind(self.device)
        for system in self.backends:
            for backend, precision in system.sides:
                declared = declaration(backend)
                if kind not in declared.devices:
                    where = " or ".join(declared.devices)
                    raise ConfigError(
                        f"backend spec {system.text!r}: the {backend} backend runs on {where} only, not on "
                        f"--device {self.device}"
                    )
                problem = declared.precision_problem(precision, self.device)
                if problem:
                    raise ConfigError(
                        f"backend spec {system.text!r}: {precision} {problem}, or --device cuda"
                    )
        if not isinstance(self.peers, bool):
            for name in self.peers:
                if kind not in PEERS[name].devices:
                    raise ConfigError(
                        f"peer {name} runs on {' or '.join(PEERS[name].devices)} only, not on --device "
                        f"{self.device}; leave it out of peers"
                    )

    @property
    def draft_spec(self) -> SystemSpec | None:
        """The draft as a converted copy of the model (`draft = "ct2:int8"`), or None."""
        if not self.draft or self.draft == STUDENT or ":" not in self.draft or Path(self.draft).exists():
            return None
        (spec,) = parse_backends(self.draft)[1:] or [SystemSpec(*BASELINE)]
        return spec

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        source = self.synthetic_model or Path(str(self.model)).name
        return "bench-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "backends":
                value = [s.text for s in value]
            elif isinstance(value, Goal):
                value = asdict(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, (list, tuple)):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            out[f.name] = value
        return out


def load_toml(path: Path) -> dict[str, Any]:
    """A config file's keys, converted to BenchConfig field types; unknown keys are an error."""
    data = read_toml_file(path)
    known = {f.name for f in fields(BenchConfig)} - {"command"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    base = Path(path).resolve().parent
    if "backends" in data:
        data["backends"] = parse_backends(data["backends"])
    if "modes" in data:
        data["modes"] = tuple(data["modes"].split(",") if isinstance(data["modes"], str) else data["modes"])
    if "audio" in data:
        data["audio"] = [_relative(base, a) for a in data["audio"]]
    if "goal" in data:
        data["goal"] = Goal.load(data["goal"], base, origin=f"{path}: [goal]")
    for key in ("output", "cache_dir"):
        if key in data:
            data[key] = Path(data[key])
    return data


def _relative(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() or path.exists() else base / path


def merged(file_values: dict[str, Any], flag_values: dict[str, Any]) -> BenchConfig:
    """A config from file values overridden by the flags actually given (not None)."""
    values = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    if values.get("model") and values.get("synthetic_model"):
        # a flag for one of them replaces the file's other one
        if flag_values.get("model") and not flag_values.get("synthetic_model"):
            values.pop("synthetic_model")
        elif flag_values.get("synthetic_model") and not flag_values.get("model"):
            values.pop("model")
    return BenchConfig(**values)
