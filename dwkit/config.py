"""A service's checked-in settings: one TOML file, environment overrides, validated on load.

```toml
model = "/models/distil-large-v3.5-ct2"   # model directory, or a hub id (org/name)
backend = "auto"                          # hf, ct2, onnx, trt, ggml, or auto
device = "cpu"                            # cpu, cuda, cuda:N
precision = "int8"                        # the backend's own name; leave out for the model's own
mode = "sequential"                       # or chunked

[decode]
beam_size = 1

[longform]
temperatures = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
```
(examples/prod.toml lists every key.) Precedence, lowest first: defaults, the file,
environment variables, explicit overrides (the command line's flags).

Environment: `DWKIT_<KEY>` sets a top-level key (`DWKIT_BACKEND=ct2`) and
`DWKIT_<TABLE>__<KEY>` a table key (`DWKIT_DECODE__BEAM_SIZE=5`). Values are parsed as
the key's type (`true`/`false`, numbers, lists as `0.0,0.2` or `[0.0, 0.2]`) and validated
like the file's. Other `DWKIT_` variables (`DWKIT_CACHE`) are not config keys and are left
alone, but an unknown `DWKIT_DECODE__*` or `DWKIT_LONGFORM__*` can only be a typo: an error.

TOML has no null: a key that may be unset (precision, language, the thresholds, ...) takes
the string "none" to unset it, in the file, in the environment and on the command line.

The keys are not listed here: each is declared once, with its type, default, rule and help,
on the field it sets (dwkit.decoding.DecodeOptions for [decode], dwkit.longform.LongformOptions
for [longform] and the top-level mode, language, task and batch_size, Config for the rest);
dwkit.schema derives the tables, the environment variables and the command-line flags.

Validation names the key and where its value came from, and covers the values themselves
(types, ranges, choices) and the combinations a machine or a model directory makes
impossible: trt without an NVIDIA GPU or TensorRT, ggml off the CPU, a backend that does not
match the model directory's format, a precision the backend (or the converted model) does
not have. `backend = "auto"` picks the best backend usable here for the model directory
(`AUTO_PREFERENCE`) and logs its choice and why at INFO.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit.decoding.options import DecodeOptions
from dwkit.errors import BackendUnavailable, ConfigError, ModelError
from dwkit.longform.options import LongformOptions
from dwkit.runtimes.base import RuntimeConfig
from dwkit.schema import describe, hints, key_fields, make, option, read_value, same_as, spec_of, table_class
from dwkit.schema import show as _show
from dwkit.tomlfile import read_toml_file

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("hf", "ct2", "onnx", "trt", "ggml")
OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")  # dwkit.writers.FORMATS (not imported: keep this light)
ENV_PREFIX = "DWKIT_"

# What `backend = "auto"` tries for each kind of model directory (its dwkit.json format, or
# hf for a transformers checkpoint), best first; the first one usable here wins.
AUTO_PREFERENCE: dict[str, tuple[str, ...]] = {
    "hf": ("hf",),
    "ct2": ("ct2",),
    "onnx": ("trt", "onnx"),  # TensorRT through onnxruntime when an NVIDIA GPU and TensorRT are here
    "ggml": ("ggml",),
}
# Precision names of backends whose module may be absent from this build.
_KNOWN_PRECISIONS = {"trt": ("fp32", "fp16", "bf16")}
# Backends that run a converted directory at the precision it was converted to, only.
_FIXED_PRECISION = ("onnx", "ggml")

# The config tables, derived from the options classes that declare their keys.
DecodeSection = table_class(DecodeOptions, "decode")
LongformSection = table_class(LongformOptions, "longform")
TABLES: dict[str, type] = {"decode": DecodeSection, "longform": LongformSection}


@dataclass
class Config:
    """Everything a service needs to build a Transcriber: model, backend, runtime and engine settings.

    Build it with `from_file` (a TOML file plus the environment) or `from_dict`; both
    validate. `check` (run by both when the model is a local directory, and by `dwkit.load`
    once a hub id is resolved) checks the combinations and resolves `backend = "auto"`.
    """

    model: str | None = option(
        None, top=True, help="model directory (transformers checkpoint or dwconvert output) or hub id"
    )
    backend: str = option(
        "auto",
        top=True,
        choices=lambda: (*BACKEND_NAMES, "auto"),  # read when checked: the registry may grow
        help="auto: the best backend usable here for the model directory",
    )
    device: str = option(
        "cpu",
        top=True,
        pattern=r"cpu|cuda(:\d+)?",
        pattern_hint="use cpu, cuda or cuda:N",
        help="cpu, cuda, cuda:N",
    )
    precision: str | None = option(None, top=True, help="the backend's own precision/compute type name")
    threads: int = option(0, top=True, minimum=0, help="intra-op threads (0: library default)")
    batch_size: int = same_as(LongformOptions, "batch_size")
    mode: str = same_as(LongformOptions, "mode")
    language: str | None = same_as(LongformOptions, "language")
    task: str = same_as(LongformOptions, "task")
    output_format: str = option("txt", top=True, choices=OUTPUT_FORMATS, short="-f", help="transcript format")
    decode: DecodeSection = field(default_factory=DecodeSection)  # type: ignore[valid-type]
    longform: LongformSection = field(default_factory=LongformSection)  # type: ignore[valid-type]
    # Not keys: where the values came from, and what `check` resolved.
    source: Path | None = field(default=None, compare=False, repr=False)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    resolved_backend: str | None = field(default=None, init=False, compare=False)
    backend_reason: str | None = field(default=None, init=False, compare=False, repr=False)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        check: bool = True,
        flags: Mapping[str, tuple[Any, str]] | None = None,
    ) -> Config:
        """Read a TOML config; `env` (default: os.environ), `overrides` then `flags` win over its values."""
        path = Path(path).expanduser()
        data = read_toml_file(path)
        env = os.environ if env is None else env
        return cls.from_dict(data, source=path, env=env, overrides=overrides, check=check, flags=flags)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        source: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        check: bool = True,
        flags: Mapping[str, tuple[Any, str]] | None = None,
    ) -> Config:
        """Validate `data` (TOML's shape: top-level keys plus [decode] / [longform] tables).

        `env` is applied only when given (pass os.environ for a service's environment);
        `source` names the file in messages and anchors a relative model path;
        `flags` are the command line's: dotted key -> (value or its text, the flag's name),
        read like the environment's text and applied last.
        """
        source = Path(source) if source is not None else None
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        _merge(values, origins, data, str(source) if source else "config", from_text=False)
        if env is not None:
            for name, (value, origin) in _env_layer(env).items():
                _set(values, origins, name, value, origin, from_text=True)
        if overrides:
            _merge(values, origins, overrides, "command line", from_text=False)
        for name, (value, origin) in (flags or {}).items():
            _set(values, origins, name, value, origin, from_text=True)
        sections = {table: TABLES[table](**values.pop(table, {})) for table in TABLES}
        config = cls(**values, **sections, source=source, origins=origins)
        config._check_values()
        if check:
            config.check()
        return config

    # -- what a Transcriber is built from ---------------------------------------------------

    def to_runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(
            device=self.device, precision=self.precision, threads=self.threads, batch_size=self.batch_size
        )

    def to_decode_options(self) -> DecodeOptions:
        return make(DecodeOptions, dataclasses.asdict(self.decode))

    def to_longform_options(self) -> LongformOptions:
        values = {f.name: getattr(self, f.name) for f in key_fields(LongformOptions, top=True)}
        values.update(dataclasses.asdict(self.longform))
        try:
            return make(LongformOptions, values, decode=self.to_decode_options())
        except ConfigError as exc:
            raise ConfigError(f"{self._where()}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The keys and values, in the file's shape (unset values left out, as TOML must)."""
        out: dict[str, Any] = {}
        for f in _key_fields(type(self)):
            value = getattr(self, f.name)
            if f.name in TABLES:
                table = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
                out[f.name] = table
            elif value is not None:
                out[f.name] = value
        return out

    # -- the model and the backend ----------------------------------------------------------

    def local_model_dir(self) -> Path | None:
        """The model as an existing local directory (a relative path from the config file's
        folder first, then the working directory), or None (a hub id, or not there)."""
        if not self.model:
            return None
        path = Path(self.model).expanduser()
        if not path.is_absolute() and self.source is not None and self.origin("model") == str(self.source):
            beside = self.source.parent / path
            if beside.is_dir():
                return beside
        return path if path.is_dir() else None

    def resolve_model(self) -> Path:
        """The model directory: local, or a hub id from the local Hugging Face cache / the hub."""
        if not self.model:
            raise ConfigError(f"{self._where()}: model: not set (a model directory or a hub id org/name)")
        local = self.local_model_dir()
        if local is not None:
            return local
        from dwkit.converters.base import resolve_source

        try:
            return resolve_source(self.model)
        except ModelError as exc:
            raise ModelError(f"{self.origin('model')}: model: {exc}") from exc

    def check(self, model_dir: str | os.PathLike[str] | None = None) -> None:
        """Refuse impossible combinations and resolve `backend = "auto"`.

        `model_dir` is the resolved model directory; without it the model is checked only
        when it is a local directory (a hub id is checked once `resolve_model` fetched it).
        """
        directory = Path(model_dir) if model_dir is not None else self.local_model_dir()
        self._check_machine(self.backend)
        if directory is None:
            if self.backend != "auto":
                self._check_precision(self.backend, None)
                self.resolved_backend, self.backend_reason = self.backend, "set in the config"
            return
        found = self._model_format(directory)
        if self.backend == "auto":
            name, reason = self._choose_backend(found, directory)
            self.resolved_backend, self.backend_reason = name, reason
            # Said aloud when a config asked for auto or a better backend was passed over; a
            # bare command line that simply runs the model's own format stays quiet.
            obvious = name == AUTO_PREFERENCE.get(found, (found,))[0]
            asked = self.source is not None or "backend" in self.origins
            level = logging.INFO if asked or not obvious else logging.DEBUG
            logger.log(level, "backend auto: chose %s for %s (%s)", name, directory, reason)
        else:
            if found != self.backend and not (found == "onnx" and self.backend == "trt"):
                raise ConfigError(
                    f"{self.origin('backend')}: backend = {_show(self.backend)} does not match the model: "
                    f'{directory} holds a model in {found} format; set backend = {_show(found)} (or "auto"), '
                    f"or convert it with dwconvert --to {self.backend}"
                )
            self.resolved_backend, self.backend_reason = self.backend, "set in the config"
        self._check_precision(self.resolved_backend, directory)

    def origin(self, key: str) -> str:
        """Where `key`'s value came from: the file, an environment variable, the command line."""
        return self.origins.get(key) or self._where()

    # -- internals --------------------------------------------------------------------------

    def _where(self) -> str:
        return str(self.source) if self.source else "config"

    def _check_values(self) -> None:
        """Rules between keys (each key's own rules ran as it was read)."""
        lf = self.longform
        stride = lf.chunk_length_s / 6 if lf.stride_length_s is None else lf.stride_length_s
        if 2 * stride >= lf.chunk_length_s:
            key = "longform.stride_length_s" if lf.stride_length_s is not None else "longform.chunk_length_s"
            raise ConfigError(
                f"{self.origin(key)}: {key}: the stride ({stride:g} s each side) must be less than "
                f"half of longform.chunk_length_s ({lf.chunk_length_s:g} s)"
            )
        if self.backend == "ggml" and self.device != "cpu":
            raise ConfigError(
                f"{self.origin('device')}: device = {_show(self.device)}: the ggml backend (whisper.cpp "
                'through pywhispercpp) runs on the CPU only; set device = "cpu"'
            )
        if self.backend == "trt" and not self.device.startswith("cuda"):
            raise ConfigError(
                f"{self.origin('device')}: device = {_show(self.device)}: the trt backend runs on an "
                'NVIDIA GPU only; set device = "cuda"'
            )

    def _check_machine(self, backend: str) -> None:
        if backend == "trt":
            reason = _trt_missing()
            if reason:
                raise ConfigError(f'{self.origin("backend")}: backend = "trt": {reason}')

    def _model_format(self, directory: Path) -> str:
        from dwkit.runtimes import backend_of

        try:
            return backend_of(directory)
        except ModelError as exc:
            raise ConfigError(f"{self.origin('model')}: model: {exc}") from exc

    def _choose_backend(self, found: str, directory: Path) -> tuple[str, str]:
        preference = AUTO_PREFERENCE.get(found, (found,))
        skipped = []
        for name in preference:
            reason = backend_unavailable_reason(name, self.device)
            if reason is None:
                why = f"the model directory is in {found} format"
                if skipped:
                    why += "; skipped " + "; ".join(skipped)
                return name, why
            skipped.append(f"{name}: {reason}")
        raise ConfigError(
            f'{self.origin("backend")}: backend = "auto": no backend for this {found} model is usable '
            f"on {self.device} here ({'; '.join(skipped)})"
        )

    def _check_precision(self, backend: str, directory: Path | None) -> None:
        if self.precision is None:
            return
        valid = backend_precisions(backend)
        where = self.origin("precision")
        if valid and self.precision not in valid:
            raise ConfigError(
                f"{where}: precision = {_show(self.precision)} is not a {backend} precision; "
                f"choose one of {', '.join(valid)}"
            )
        if backend == "hf" and self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError(
                f'{where}: precision = "fp16" with hf needs a CUDA device; on CPU use fp32 or bf16'
            )
        if directory is not None and backend in _FIXED_PRECISION:
            from dwkit.manifest import read_manifest

            stored = (read_manifest(directory) or {}).get("precision")
            if stored and stored != self.precision:
                raise ConfigError(
                    f"{where}: precision = {_show(self.precision)}, but {directory} holds {backend} {stored} "
                    f"weights and {backend} cannot change precision at load time; set precision = "
                    f"{_show(stored)} (or leave it out), or convert again with --precision {self.precision}"
                )


# -- backends on this machine ----------------------------------------------------------------


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, from the driver's device nodes (no library imported)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))


def _trt_missing() -> str | None:
    if not nvidia_gpu_present():
        return "TensorRT needs an NVIDIA GPU and none is visible here"
    if importlib.util.find_spec("tensorrt") is None:
        return "needs TensorRT 10 (the tensorrt package, from NVIDIA's index): pip install 'dwkit[gpu]'"
    return None


def backend_unavailable_reason(name: str, device: str = "cpu") -> str | None:
    """Why backend `name` cannot run on `device` here, or None when it can.

    Checks the library (each backend class's `unavailable_reason`, or the pip extra when its
    module does not import) and the device; a CUDA device is only checked for presence.
    """
    from dwkit.runtimes import BACKENDS, get

    if name not in BACKENDS:
        return f"unknown backend; choose one of {', '.join(BACKENDS)}"
    if name == "trt":
        missing = _trt_missing()
        if missing:
            return missing
        if not device.startswith("cuda"):
            return "runs on an NVIDIA GPU only (device cuda)"
    if name == "ggml" and device != "cpu":
        return "whisper.cpp here is CPU-only"
    if device.startswith("cuda") and not nvidia_gpu_present():
        return f"device {device}: no NVIDIA GPU visible"
    try:
        cls = get(name)
    except BackendUnavailable as exc:
        return _module_missing(name, exc)
    return cls.unavailable_reason()


def _module_missing(name: str, exc: BackendUnavailable) -> str:
    cause = exc.__cause__
    missing = getattr(cause, "name", None) or ""
    if missing.startswith("dwkit."):
        return f"not part of this dwkit build (no module {missing})"
    return str(exc).removeprefix(f"backend {name} ")


def backend_precisions(name: str) -> tuple[str, ...]:
    """The precision names backend `name` accepts (its own PRECISIONS plus aliases), or ()."""
    from dwkit.runtimes import get

    try:
        cls = get(name)
    except BackendUnavailable:
        return _KNOWN_PRECISIONS.get(name, ())
    module = sys.modules.get(cls.__module__)
    return tuple(getattr(cls, "PRECISIONS", ())) + tuple(getattr(module, "ALIASES", ()))


# -- reading values ----------------------------------------------------------------------


def _key_fields(cls: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in ("source", "origins")]


def _merge(
    values: dict[str, Any], origins: dict[str, str], data: Mapping[str, Any], origin: str, from_text: bool
) -> None:
    """Validate the keys of one layer (file or overrides) into `values`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a table of keys, got {type(data).__name__}")
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: {key}: must be a table ([{key}]), got {describe(value)}")
            for sub, sub_value in value.items():
                _set(values, origins, f"{key}.{sub}", sub_value, origin, from_text)
        else:
            _set(values, origins, key, value, origin, from_text)


def _set(
    values: dict[str, Any], origins: dict[str, str], name: str, value: Any, origin: str, from_text: bool
) -> None:
    table, _, key = name.rpartition(".")
    cls = TABLES[table] if table else Config
    fields = {f.name: f for f in _key_fields(cls) if f.name not in TABLES}
    if key not in fields:
        known = ", ".join(fields)
        where = f"[{table}]" if table else "top level"
        raise ConfigError(f"{origin}: {name}: unknown key (known keys at {where}: {known})")
    converted = read_value(value, hints(cls)[key], spec_of(fields[key]), name, origin, from_text)
    target = values.setdefault(table, {}) if table else values
    target[key] = converted
    origins[name] = origin


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Config keys set in the environment: dotted name -> (text, origin)."""
    found: dict[str, tuple[str, str]] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        table, sep, key = rest.partition("__")
        if sep:
            if table not in TABLES:
                continue  # not a config table: another tool's DWKIT_ variable
            name = f"{table}.{key}"
            known = {f.name for f in _key_fields(TABLES[table])}
            if key not in known:
                raise ConfigError(
                    f"environment variable {var}: unknown key {name} (known: "
                    f"{', '.join(f'{ENV_PREFIX}{table.upper()}__{k.upper()}' for k in sorted(known))})"
                )
        else:
            name = rest
            if name in TABLES or name not in {f.name for f in _key_fields(Config)}:
                continue  # DWKIT_CACHE and friends are not config keys
        found[name] = (text, f"environment variable {var}")
    return found
