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
the string "none" to unset it, in the file and in the environment.

Validation names the key and where its value came from, and covers the values themselves
(types, ranges, choices) and the combinations a machine or a model directory makes
impossible: trt without an NVIDIA GPU or TensorRT, ggml off the CPU, a backend that does not
match the model directory's format, a precision the backend (or the converted model) does
not have. `backend = "auto"` picks the best backend usable here for the model directory
(`AUTO_PREFERENCE`) and logs its choice and why at INFO.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit import runtimes
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError, ModelError
from dwkit.longform.options import MODES, TASKS, LongformOptions
from dwkit.runtimes.base import RuntimeConfig
from dwkit.tomlfile import read_toml_file, read_toml_text

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")  # dwkit.writers.FORMATS (not imported: keep this light)
ENV_PREFIX = "DWKIT_"
NONE = "none"  # how TOML and the environment spell "unset" for an optional key


_LONGFORM = LongformOptions()
_DECODE = DecodeOptions()


def _key(default: Any = None, *, factory: Any = None, **rules: Any) -> Any:
    """A config key: its default and its value rules (minimum, above, maximum, choices, pattern)."""
    if factory is not None:
        return field(default_factory=factory, metadata=rules)
    return field(default=default, metadata=rules)


@dataclass
class DecodeSection:
    """`[decode]`: how each 30 s window is decoded (dwkit.decoding.DecodeOptions)."""

    beam_size: int = _key(_DECODE.beam_size, minimum=1)
    patience: float = _key(_DECODE.patience, above=0)
    length_penalty: float | None = _DECODE.length_penalty
    suppress_tokens: list[int] | None = None  # unset: the model's own list; [] suppresses nothing
    suppress_blank: bool = _DECODE.suppress_blank
    max_new_tokens: int | None = _key(_DECODE.max_new_tokens, minimum=1)
    seed: int | None = _DECODE.seed


@dataclass
class LongformSection:
    """`[longform]`: the long-form engine's settings (dwkit.longform.LongformOptions)."""

    temperatures: list[float] = _key(factory=lambda: list(_LONGFORM.temperatures), minimum=0, nonempty=True)
    compression_ratio_threshold: float | None = _key(_LONGFORM.compression_ratio_threshold, above=0)
    logprob_threshold: float | None = _LONGFORM.logprob_threshold
    no_speech_threshold: float | None = _key(_LONGFORM.no_speech_threshold, minimum=0, maximum=1)
    condition_on_prev_tokens: bool = _LONGFORM.condition_on_prev_tokens
    chunk_length_s: float = _key(_LONGFORM.chunk_length_s, above=0, maximum=30)
    stride_length_s: float | None = _key(_LONGFORM.stride_length_s, minimum=0)  # unset: chunk / 6
    return_timestamps: bool = _LONGFORM.return_timestamps


@dataclass
class BatchSection:
    """`[batch]`: how `dwkit batch` (dwkit.batch) spreads a corpus over Ray actors and writes it."""

    actors: int = _key(1, minimum=1)  # one long-form engine (one loaded model) each
    cpus_per_actor: float = _key(1.0, above=0)  # local Ray gets actors x this many CPUs
    gpus_per_actor: float = _key(0.0, minimum=0)  # 1 with device = "cuda": an actor per GPU
    files_per_batch: int = _key(4, minimum=1)  # files per transcribe_batch call in an actor
    shard_files: int = _key(64, minimum=1)  # records per output shard (the unit a kill can lose)
    shard_formats: list[str] = _key(factory=lambda: ["parquet"], choices=("parquet", "jsonl"), nonempty=True)
    file_formats: list[str] = _key(factory=list, choices=OUTPUT_FORMATS)  # also one file per input
    object_store_mb: int = _key(256, minimum=80)  # local Ray's object store (records are small)


@dataclass
class ServeSection:
    """`[serve]`: `dwkit serve`'s address, limits and dynamic batching (dwkit.serve)."""

    host: str = "127.0.0.1"
    port: int = _key(8000, minimum=0, maximum=65535)
    model_name: str | None = None  # the `model` clients send; unset: the model directory's name
    max_batch_size: int = _key(8, minimum=1)  # requests decoded together in one engine call
    max_wait_ms: float = _key(20.0, minimum=0)  # how long the first request waits for company
    max_request_mb: float = _key(25.0, above=0)  # larger uploads get 413 (OpenAI's own limit)
    max_audio_s: float = _key(3600.0, above=0)
    max_concurrent: int = _key(64, minimum=1)  # requests in flight; more get 429
    request_timeout_s: float = _key(600.0, above=0)  # then 504
    api_key_env: str = "DWKIT_SERVE_API_KEY"  # when this variable is set, requests need it as Bearer


TABLES: dict[str, type] = {
    "decode": DecodeSection,
    "longform": LongformSection,
    "batch": BatchSection,
    "serve": ServeSection,
}


@dataclass
class Config:
    """Everything a service needs to build a Transcriber: model, backend, runtime and engine settings.

    Build it with `from_file` (a TOML file plus the environment) or `from_dict`; both
    validate. `check` (run by both when the model is a local directory, and by `dwkit.load`
    once a hub id is resolved) checks the combinations and resolves `backend = "auto"`.
    """

    model: str | None = None
    backend: str = _key("auto", backend=True)  # a registered backend's name, or "auto"
    device: str = _key("cpu", pattern=r"cpu|cuda(:\d+)?")
    precision: str | None = None
    threads: int = _key(0, minimum=0)
    batch_size: int = _key(_LONGFORM.batch_size, minimum=1)
    mode: str = _key(_LONGFORM.mode, choices=MODES)
    language: str | None = _key(None, language=True)
    task: str = _key(_LONGFORM.task, choices=TASKS)
    output_format: str = _key("txt", choices=OUTPUT_FORMATS)
    decode: DecodeSection = field(default_factory=DecodeSection)
    longform: LongformSection = field(default_factory=LongformSection)
    batch: BatchSection = field(default_factory=BatchSection)
    serve: ServeSection = field(default_factory=ServeSection)
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
    ) -> Config:
        """Read a TOML config; `env` (default: os.environ) then `overrides` win over its values."""
        path = Path(path).expanduser()
        data = read_toml_file(path)
        return cls.from_dict(
            data, source=path, env=os.environ if env is None else env, overrides=overrides, check=check
        )

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        source: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> Config:
        """Validate `data` (TOML's shape: top-level keys plus [decode] / [longform] tables).

        `env` is applied only when given (pass os.environ for a service's environment);
        `source` names the file in messages and anchors a relative model path.
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
        d = self.decode
        return DecodeOptions(
            beam_size=d.beam_size,
            patience=d.patience,
            length_penalty=d.length_penalty,
            max_new_tokens=d.max_new_tokens,
            suppress_tokens=None if d.suppress_tokens is None else list(d.suppress_tokens),
            suppress_blank=d.suppress_blank,
            seed=d.seed,
        )

    def to_longform_options(self) -> LongformOptions:
        lf = self.longform
        try:
            return LongformOptions(
                mode=self.mode,
                language=self.language,
                task=self.task,
                temperatures=tuple(lf.temperatures),
                compression_ratio_threshold=lf.compression_ratio_threshold,
                logprob_threshold=lf.logprob_threshold,
                no_speech_threshold=lf.no_speech_threshold,
                condition_on_prev_tokens=lf.condition_on_prev_tokens,
                chunk_length_s=lf.chunk_length_s,
                stride_length_s=lf.stride_length_s,
                batch_size=self.batch_size,
                return_timestamps=lf.return_timestamps,
                decode=self.to_decode_options(),
            )
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
            logger.info("backend auto: chose %s for %s (%s)", name, directory, reason)
        else:
            if found not in runtimes.spec(self.backend).formats:
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
        if self.backend != "auto":
            kind = "cuda" if self.device.startswith("cuda") else "cpu"
            if kind not in runtimes.spec(self.backend).devices:
                problem = runtimes.machine_problem(self.backend, self.device)
                raise ConfigError(f"{self.origin('device')}: device = {_show(self.device)}: {problem}")

    def _check_machine(self, backend: str) -> None:
        """A backend set by name must have its device and libraries here (nothing is imported)."""
        if backend == "auto":
            return
        problem = runtimes.machine_problem(backend, self.device)
        if problem:
            raise ConfigError(f"{self.origin('backend')}: backend = {_show(backend)}: {problem}")

    def _model_format(self, directory: Path) -> str:
        from dwkit.runtimes import backend_of

        try:
            return backend_of(directory)
        except ModelError as exc:
            raise ConfigError(f"{self.origin('model')}: model: {exc}") from exc

    def _choose_backend(self, found: str, directory: Path) -> tuple[str, str]:
        skipped = []
        for name in (s.name for s in runtimes.runners_of(found)):
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
        declared = runtimes.spec(backend)
        where = self.origin("precision")
        problem = declared.precision_problem(self.precision, self.device)
        if problem:
            raise ConfigError(f"{where}: precision = {_show(self.precision)} {problem}")
        if directory is not None and declared.fixed_precision:
            from dwkit.manifest import read_manifest

            stored = (read_manifest(directory) or {}).get("precision")
            if stored and stored != self.precision:
                raise ConfigError(
                    f"{where}: precision = {_show(self.precision)}, but {directory} holds {backend} {stored} "
                    f"weights and {backend} cannot change precision at load time; set precision = "
                    f"{_show(stored)} (or leave it out), or convert again with --precision {self.precision}"
                )


# -- backends on this machine ----------------------------------------------------------------


def backend_unavailable_reason(name: str, device: str = "cpu") -> str | None:
    """Why backend `name` cannot run on `device` here, or None (imports its library to check)."""
    return runtimes.unavailable_reason(name, device)


# -- reading values ----------------------------------------------------------------------


def _key_fields(cls: type) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in ("source", "origins")]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _merge(
    values: dict[str, Any], origins: dict[str, str], data: Mapping[str, Any], origin: str, from_text: bool
) -> None:
    """Validate the keys of one layer (file or overrides) into `values`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a table of keys, got {type(data).__name__}")
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: {key}: must be a table ([{key}]), got {_describe(value)}")
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
    f = fields[key]
    converted = _convert(value, _hints(cls)[key], name, origin, from_text)
    _check_rules(converted, f.metadata, name, origin)
    target = values.setdefault(table, {}) if table else values
    target[key] = converted
    origins[name] = origin


def _convert(value: Any, hint: Any, name: str, origin: str, from_text: bool) -> Any:
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in (NONE, "")):
            return None
    if from_text and isinstance(value, str):
        value = _parse_text(value, hint, name, origin)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{origin}: {name}: expected a list of {_type_name(item)}s, got {_describe(value)}"
            )
        return [_convert(v, item, name, origin, from_text=False) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a key with a type this reader does not know is a bug here
        raise TypeError(f"config key {name}: unsupported type {hint}")
    unset = f' (or "{NONE}" to unset it)' if optional else ""
    raise ConfigError(
        f"{origin}: {name}: expected {_type_name(hint, article=True)}{unset}, got {_describe(value)}"
    )


def _parse_text(text: str, hint: Any, name: str, origin: str) -> Any:
    """An environment variable's text as the key's type."""
    raw = text.strip()
    try:
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            if raw.startswith("["):
                return read_toml_text(f"v = {raw}", origin)["v"]
            return [_parse_text(part, item, name, origin) for part in raw.split(",") if part.strip()]
        if hint is bool:
            lowered = raw.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            return text
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        return text  # reported by _convert with the expected type
    except Exception as exc:  # TOML syntax in a list
        raise ConfigError(f"{origin}: {name}: cannot read {text!r} as a list ({exc})") from exc
    return text


def _check_rules(value: Any, rules: Mapping[str, Any], name: str, origin: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if rules.get("nonempty") and not items:
        raise ConfigError(f"{origin}: {name}: must not be empty")
    for item in items:
        problem = None
        if "choices" in rules and item not in rules["choices"]:
            problem = f"choose one of {', '.join(rules['choices'])}"
        elif rules.get("backend") and item not in (*runtimes.names(), "auto"):
            problem = f"choose one of {', '.join((*runtimes.names(), 'auto'))}"
        elif "pattern" in rules and not re.fullmatch(rules["pattern"], item):
            problem = "use cpu, cuda or cuda:N"
        elif "minimum" in rules and item < rules["minimum"]:
            problem = f"must be >= {rules['minimum']}"
        elif "above" in rules and item <= rules["above"]:
            problem = f"must be > {rules['above']}"
        elif "maximum" in rules and item > rules["maximum"]:
            problem = f"must be <= {rules['maximum']}"
        elif rules.get("language") and not _known_language(item):
            problem = "not a Whisper language code or name (en, english, de, ...)"
        if problem:
            raise ConfigError(f"{origin}: {name} = {_show(item)}: {problem}")


def _known_language(value: str) -> bool:
    from dwkit.tokenizer import LANGUAGES

    lowered = value.lower()
    return lowered in LANGUAGES or lowered in LANGUAGES.values()


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


def _type_name(hint: Any, article: bool = False) -> str:
    name = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))
    if typing.get_origin(hint) is list:
        name = f"list of {_type_name(typing.get_args(hint)[0])}s"
    if not article:
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _show(value: Any) -> str:
    """A value as TOML writes it (strings in double quotes)."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{_show(value)} ({kind.get(type(value), type(value).__name__)})"
