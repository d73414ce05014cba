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
(the registry's runners of its format, by `auto_rank`) and logs its choice and why at INFO;
for a large transformers checkpoint on the CPU it runs the configuration measured fastest for
this kind of CPU instead (dwkit/data/auto_choice.toml, dwkit.cpu_choice), e.g. the pair
openvino:int8 on AMX and AVX-512. A pair is `backend = "ENC:PREC+DEC:PREC"` or the [encoder] and
[decoder] tables (backend, precision), runtimes/pair.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwkit import cpu_choice, runtimes
from dwkit.cpu_choice import CpuChoice
from dwkit.decoding.assisted import DraftOptions
from dwkit.decoding.options import DecodeOptions
from dwkit.decoding.speculative import beam_problem
from dwkit.errors import ConfigError, ModelError
from dwkit.longform.options import LongformOptions
from dwkit.manifest import read_json_object
from dwkit.runtimes.base import RuntimeConfig
from dwkit.runtimes.pair import SIDES, PairSpec, Side, is_pair
from dwkit.schema import describe, hints, key_fields, make, option, read_value, same_as, spec_of, table_class
from dwkit.schema import show as _show
from dwkit.tomlfile import read_toml_file

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")  # dwkit.writers.FORMATS (not imported: keep this light)
ENV_PREFIX = "DWKIT_"

# The config tables, derived from the options classes that declare their keys.
DecodeSection = table_class(DecodeOptions, "decode")
LongformSection = table_class(LongformOptions, "longform")
DraftSection = table_class(DraftOptions, "draft")


@dataclass
class BatchSection:
    """`[batch]`: how `dwkit batch` (dwkit.batch) spreads a corpus over Ray actors and writes it."""

    actors: int = option(1, minimum=1, help="Ray actors, one loaded model each")
    cpus_per_actor: float = option(1.0, above=0, help="local Ray gets actors x this many CPUs")
    gpus_per_actor: float = option(0.0, minimum=0, help="1 with device = cuda: an actor per GPU")
    files_per_batch: int = option(4, minimum=1, help="files per transcribe_batch call in an actor")
    shard_files: int = option(64, minimum=1, help="records per output shard (the unit a kill can lose)")
    shard_formats: list[str] = option(
        factory=lambda: ["parquet"], choices=("parquet", "jsonl"), nonempty=True, help="shard file formats"
    )
    file_formats: list[str] = option(factory=list, choices=OUTPUT_FORMATS, help="also one file per input")
    object_store_mb: int = option(256, minimum=80, help="local Ray's object store (records are small)")


@dataclass
class PairSideSection:
    """`[encoder]` / `[decoder]`: an encoder/decoder pair (runtimes/pair.py), each half on its
    own backend, from one checkpoint; the same as `backend = "ENC:PREC+DEC:PREC"`."""

    backend: str | None = option(None, help="the backend that runs this half (hf, ct2, onnx)")
    precision: str | None = option(None, help="that backend's own precision name; unset: its default")


@dataclass
class ServeSection:
    """`[serve]`: `dwkit serve`'s address, limits and dynamic batching (dwkit.serve)."""

    host: str = option("127.0.0.1", help="address to listen on")
    port: int = option(8000, minimum=0, maximum=65535, help="port to listen on")
    model_name: str | None = option(None, help="the `model` clients send; unset: the model directory's name")
    max_batch_size: int = option(8, minimum=1, help="requests decoded together in one engine call")
    max_wait_ms: float = option(20.0, minimum=0, help="how long the first request waits for company")
    max_request_mb: float = option(25.0, above=0, help="larger uploads get 413 (OpenAI's own limit)")
    max_audio_s: float = option(3600.0, above=0, help="longer audio gets 400")
    max_concurrent: int = option(64, minimum=1, help="requests in flight; more get 429")
    request_timeout_s: float = option(600.0, above=0, help="then 504")
    api_key_env: str = option(
        "DWKIT_SERVE_API_KEY", help="when this variable is set, requests need its value as Bearer token"
    )


TABLES: dict[str, type] = {
    "decode": DecodeSection,
    "longform": LongformSection,
    "draft": DraftSection,
    "encoder": PairSideSection,
    "decoder": PairSideSection,
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

    model: str | None = option(
        None, top=True, help="model directory (transformers checkpoint or dwconvert output) or hub id"
    )
    backend: str = option(
        "auto",
        top=True,
        choices=lambda: (*runtimes.names(), "auto"),  # read when checked: plugins join the registry
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
    max_words_per_line: int | None = option(
        None,
        top=True,
        minimum=1,
        help="srt/vtt: cues of at most this many words (with word_timestamps; none: one cue per segment)",
    )
    decode: DecodeSection = field(default_factory=DecodeSection)  # type: ignore[valid-type]
    longform: LongformSection = field(default_factory=LongformSection)  # type: ignore[valid-type]
    draft: DraftSection = field(default_factory=DraftSection)  # type: ignore[valid-type]
    encoder: PairSideSection = field(default_factory=PairSideSection)
    decoder: PairSideSection = field(default_factory=PairSideSection)
    batch: BatchSection = field(default_factory=BatchSection)
    serve: ServeSection = field(default_factory=ServeSection)
    # Not keys: where the values came from, and what `check` resolved.
    source: Path | None = field(default=None, compare=False, repr=False)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    pair: PairSpec | None = field(default=None, init=False, compare=False, repr=False)  # set by _check_values
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

    def to_draft_options(self) -> DraftOptions | None:
        """The draft model's settings, or None when no draft model is set."""
        if not self.draft.model:
            return None
        return make(DraftOptions, dataclasses.asdict(self.draft))

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

    def local_model_dir(self, key: str = "model") -> Path | None:
        """The model (`key`: "model" or "draft.model") as an existing local directory (a
        relative path from the config file's folder first, then the working directory), or
        None (a hub id, or not there)."""
        value = self._model_value(key)
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and self.source is not None and self.origin(key) == str(self.source):
            beside = self.source.parent / path
            if beside.exists():  # a directory, or a single-file model (whisper.cpp)
                return beside
        return path if path.exists() else None

    def resolve_model(self, key: str = "model") -> Path:
        """The model directory: local, or a hub id from the local Hugging Face cache / the hub."""
        value = self._model_value(key)
        if not value:
            raise ConfigError(f"{self._where()}: {key}: not set (a model directory or a hub id org/name)")
        local = self.local_model_dir(key)
        if local is not None:
            return local
        from dwkit.converters.base import resolve_source

        try:
            return resolve_source(value)
        except ModelError as exc:
            raise ModelError(f"{self.origin(key)}: {key}: {exc}") from exc

    def _model_value(self, key: str) -> str | None:
        return self.draft.model if key == "draft.model" else self.model

    def check(self, model_dir: str | os.PathLike[str] | None = None) -> None:
        """Refuse impossible combinations and resolve `backend = "auto"`.

        `model_dir` is the resolved model directory; without it the model is checked only
        when it is a local directory (a hub id is checked once `resolve_model` fetched it).
        """
        directory = Path(model_dir) if model_dir is not None else self.local_model_dir()
        if self.pair is not None:
            self._check_pair(self.pair)
            return
        self._check_machine(self.backend)
        if directory is None:
            if self.backend != "auto":
                self._check_precision(self.backend, None)
                self.resolved_backend, self.backend_reason = self.backend, "set in the config"
            return
        found = self._model_format(directory)
        choice = self._cpu_choice(found, directory) if self.backend == "auto" else None
        if choice is not None:
            spec = (
                choice.spec if is_pair(choice.spec) else f"{choice.spec}+{choice.spec}"
            )  # equal sides: one backend
            self.resolved_backend, self.backend_reason = spec, choice.explain()
            logger.info("backend auto: chose %s for %s (%s)", choice.spec, directory, self.backend_reason)
            return
        if self.backend == "auto":
            name, reason = self._choose_backend(found, directory)
            self.resolved_backend, self.backend_reason = name, reason
            # Said aloud when a config asked for auto or a better backend was passed over; a
            # bare command line that simply runs the model's own format stays quiet.
            obvious = name == runtimes.runners_of(found)[0].name
            asked = self.source is not None or "backend" in self.origins
            level = logging.INFO if asked or not obvious else logging.DEBUG
            logger.log(level, "backend auto: chose %s for %s (%s)", name, directory, reason)
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
        problem = beam_problem(self.decode.beam_size) if self.draft.model else None
        if problem:
            raise ConfigError(f"{self.origin('decode.beam_size')}: {problem}")
        self.pair = self._pair_spec()
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        for name in self._named_backends():
            if kind not in runtimes.spec(name).devices:
                problem = runtimes.machine_problem(name, self.device)
                raise ConfigError(f"{self.origin('device')}: device = {_show(self.device)}: {problem}")

    def _named_backends(self) -> list[str]:
        """The backends the config names: none for auto, both sides of a pair."""
        if self.pair is not None:
            return list(dict.fromkeys((self.pair.encoder.backend, self.pair.decoder.backend)))
        return [] if self.backend == "auto" else [self.backend]

    def _pair_spec(self) -> PairSpec | None:
        """The encoder/decoder pair set by `backend = "A:P+B:Q"` or by [encoder] and [decoder]."""
        tables = {role: getattr(self, role) for role in SIDES}
        named = [role for role, table in tables.items() if table.backend or table.precision]
        if is_pair(self.backend):
            if named:
                raise ConfigError(
                    f"{self.origin(named[0] + '.backend')}: [{named[0]}] and backend = {_show(self.backend)} "
                    "both set the pair; keep one"
                )
            try:
                pair = PairSpec.parse(self.backend)
            except ConfigError as exc:
                raise ConfigError(
                    f"{self.origin('backend')}: backend = {_show(self.backend)}: {exc}"
                ) from exc
        elif named:
            unset = [role for role, table in tables.items() if not table.backend]
            if unset:
                raise ConfigError(
                    f"{self.origin(named[0] + '.' + ('backend' if named[0] in unset else 'precision'))}: "
                    f"{unset[0]}.backend: not set; a pair needs both [encoder] and [decoder] backend"
                )
            if self.backend != "auto":
                raise ConfigError(
                    f"{self.origin('backend')}: backend = {_show(self.backend)} and the [encoder]/[decoder] "
                    'tables both choose the backend; leave backend out (or "auto") for a pair'
                )
            sides = [Side(str(t.backend), t.precision) for t in tables.values()]
            try:
                pair = PairSpec.of(*sides)
            except ConfigError as exc:
                raise ConfigError(f"{self.origin('encoder.backend')}: {exc}") from exc
        else:
            return None
        if self.precision is not None:
            raise ConfigError(
                f"{self.origin('precision')}: precision = {_show(self.precision)} with the pair {pair.text}: "
                "a pair sets a precision per side (hf:bf16+ct2:int8, or precision in [encoder]/[decoder])"
            )
        return pair

    def _check_machine(self, backend: str) -> None:
        """A backend set by name must have its device and libraries here (nothing is imported)."""
        if backend == "auto":
            return
        problem = runtimes.machine_problem(backend, self.device)
        if problem:
            raise ConfigError(f"{self.origin('backend')}: backend = {_show(backend)}: {problem}")

    def _check_pair(self, pair: PairSpec) -> None:
        """Both sides' machine and precision; the directories are the pair loader's (it
        converts the sides a checkpoint does not hold, or reads the directories given)."""
        for role in SIDES:
            side = pair.side(role)
            self._check_machine(side.backend)
            problem = side.precision and runtimes.spec(side.backend).precision_problem(
                side.precision, self.device
            )
            if problem:
                raise ConfigError(f"{self.origin('backend')}: pair {pair.text}: {role} precision {problem}")
        self.resolved_backend, self.backend_reason = pair.text, "an encoder/decoder pair set in the config"

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

    def _cpu_choice(self, found: str, directory: Path) -> CpuChoice | None:
        """The CPU's fastest configuration (dwkit/data/auto_choice.toml) for a large transformers
        checkpoint on the CPU with no precision set; None: the directory's own format."""
        if found != "hf" or self.precision is not None or self.device != "cpu":
            return None
        try:
            width = int(read_json_object(directory / "config.json").get("d_model", 0))
        except (ModelError, ValueError, TypeError):
            return None  # not readable here: the loader reports it
        if width < cpu_choice.min_d_model():
            return None
        return cpu_choice.choose(
            backend_unavailable_reason,
            self.device,
            spec_problem=lambda spec: cpu_choice.conversion_memory_problem(directory, spec),
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
    if name == "backend" and isinstance(value, str) and is_pair(value):  # checked as a pair in _check_values
        converted: Any = value.strip()
    else:
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
