"""The options schema: each option field is declared once, with everything derived from it.

A field of DecodeOptions, LongformOptions or Config is declared with `option(...)`: its
default, its value rules (minimum, above, maximum, choices, pattern, nonempty, language),
its help text, and where it lives in a config file (its class's TOML table, the top level,
or nowhere). From those declarations come the TOML tables of dwkit.config, the DWKIT_*
environment variables, the command-line flags (dwkit.cli.options), the parity config's
[longform] table and the bench worker's settings. One reader (`read_value`) turns a TOML,
environment or command-line value into the field's type and checks its rules, so every
way in gets the same validation and the same one-line messages.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dwkit.errors import ConfigError
from dwkit.tomlfile import read_toml_text

NONE = "none"  # how TOML, the environment and the command line spell "unset" for an optional key
_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Spec:
    """What the schema knows about one field besides its type and default."""

    help: str = ""
    key: bool = True  # a config key (False: set by the engine, never by a user)
    top: bool = False  # a top-level config key rather than one of its class's TOML table
    flag: str | None = None  # command-line spelling when not --field-name
    short: str | None = None  # one-letter alias (-f)
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None  # callable: read when checked
    pattern: str | None = None
    pattern_hint: str = ""
    nonempty: bool = False
    language: bool = False

    def allowed(self) -> tuple[str, ...] | None:
        """The choices, asked for now when they are computed (a registry filled by plugins)."""
        return self.choices() if callable(self.choices) else self.choices


def option(default: Any = _MISSING, *, factory: Any = _MISSING, **spec: Any) -> Any:
    """A dataclass field carrying its Spec (`option(1, minimum=1, help="...")`)."""
    metadata = {"spec": Spec(**spec)}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def same_as(cls: type, name: str) -> Any:
    """A field declared by another class's field (Config's top-level keys of LongformOptions)."""
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=source.default, metadata=source.metadata)


def spec_of(f: dataclasses.Field) -> Spec:  # type: ignore[type-arg]
    return f.metadata.get("spec") or Spec()


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def key_fields(cls: type, top: bool | None = None) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """The config-key fields of `cls` (only top-level ones, only table ones, or all)."""
    return [
        f
        for f in dataclasses.fields(cls)
        if "spec" in f.metadata and spec_of(f).key and (top is None or spec_of(f).top == top)
    ]


def table_class(cls: type, name: str) -> type:
    """A dataclass of `cls`'s table keys, as the TOML table holds them (tuples as lists)."""
    types_ = hints(cls)
    fields = [(f.name, _as_toml_type(types_[f.name]), _copy(f)) for f in key_fields(cls, top=False)]
    doc = f"`[{name}]`: the config table of {cls.__name__}'s fields."
    return dataclasses.make_dataclass(f"{name.capitalize()}Section", fields, namespace={"__doc__": doc})


def build(cls: type, values: Mapping[str, Any], origin: str, nested: Mapping[str, type] | None = None) -> Any:
    """An instance of `cls` from a table of field values, each read and checked by its rules.

    Used where a table names the fields themselves (the parity config's [longform]); a
    nested table (`decode`) is built as its own class from `nested`.
    """
    nested = dict(nested or {})
    types_ = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(f"{origin}: {name}: unknown key (known keys: {', '.join(fields)})")
        if name in nested and isinstance(value, Mapping):
            kwargs[name] = build(nested[name], value, f"{origin}: {name}")
            continue
        kwargs[name] = read_value(value, types_[name], spec_of(fields[name]), name, origin)
    try:
        return make(cls, kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc


def make(cls: type, values: Mapping[str, Any], **extra: Any) -> Any:
    """`cls(**values, **extra)` with values as read from TOML (lists for tuple fields become tuples)."""
    types_ = hints(cls)
    return cls(**{name: from_toml(value, types_[name]) for name, value in values.items()}, **extra)


def flat_values(options: Any) -> dict[str, Any]:
    """Every config-key value of an options object, nested ones flattened (for reports)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flat_values(value))
        elif "spec" in f.metadata and spec_of(f).key:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def validate(obj: Any) -> None:
    """Check every field of a constructed options object against its rules."""
    for f in dataclasses.fields(obj):
        if "spec" in f.metadata:
            check(getattr(obj, f.name), spec_of(f), f.name, type(obj).__name__)


def from_toml(value: Any, hint: Any) -> Any:
    """A value read from TOML as the field holds it (a list for a tuple field becomes a tuple)."""
    if value is not None and typing.get_origin(unwrap(hint)[0]) is tuple:
        return tuple(value)
    return value


# -- reading one value -----------------------------------------------------------------------


def read_value(value: Any, hint: Any, spec: Spec, name: str, origin: str, from_text: bool = False) -> Any:
    """`value` as the field's type, checked by its rules; `from_text`: an environment variable's
    or a command-line flag's text, parsed as the type first."""
    converted = _convert(value, _as_toml_type(hint), name, origin, from_text)
    check(converted, spec, name, origin)
    return converted


def check(value: Any, spec: Spec, name: str, origin: str) -> None:
    if value is None:
        return
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if spec.nonempty and not items:
        raise ConfigError(f"{origin}: {name}: must not be empty")
    for item in items:
        problem = None
        allowed = spec.allowed()
        if allowed is not None and item not in allowed:
            problem = f"choose one of {', '.join(allowed)}"
        elif spec.pattern is not None and not re.fullmatch(spec.pattern, item):
            problem = spec.pattern_hint
        elif spec.minimum is not None and item < spec.minimum:
            problem = f"must be >= {spec.minimum:g}"
        elif spec.above is not None and item <= spec.above:
            problem = f"must be > {spec.above:g}"
        elif spec.maximum is not None and item > spec.maximum:
            problem = f"must be <= {spec.maximum:g}"
        elif spec.language and not _known_language(item):
            problem = "not a Whisper language code or name (en, english, de, ...)"
        if problem:
            raise ConfigError(f"{origin}: {name} = {show(item)}: {problem}")


def unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None was allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


def _as_toml_type(hint: Any) -> Any:
    """tuple[X, ...] as list[X]: TOML, the environment and flags give lists."""
    inner, optional = unwrap(hint)
    if typing.get_origin(inner) is tuple:
        inner = list[typing.get_args(inner)[0]]  # type: ignore[valid-type]
    return inner | None if optional else inner


def _convert(value: Any, hint: Any, name: str, origin: str, from_text: bool) -> Any:
    hint, optional = unwrap(hint)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in (NONE, ""))):
        return None
    if from_text and isinstance(value, str):
        value = _parse_text(value, hint, name, origin)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{origin}: {name}: expected a list of {_type_name(item)}s, got {describe(value)}"
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
        f"{origin}: {name}: expected {_type_name(hint, article=True)}{unset}, got {describe(value)}"
    )


def _parse_text(text: str, hint: Any, name: str, origin: str) -> Any:
    """Text (an environment variable, a flag) as the key's type; lists as `0,0.2` or `[0, 0.2]`."""
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
    except ConfigError as exc:  # TOML syntax in a list
        raise ConfigError(f"{origin}: {name}: cannot read {text!r} as a list ({exc})") from exc
    return text


def _known_language(value: str) -> bool:
    from dwkit.tokenizer import LANGUAGES

    lowered = value.lower()
    return lowered in LANGUAGES or lowered in LANGUAGES.values()


def _copy(f: dataclasses.Field) -> dataclasses.Field:  # type: ignore[type-arg]
    """The field for a table class: a tuple default becomes a list (a fresh one per instance)."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    if isinstance(f.default, tuple):
        default = list(f.default)
        return dataclasses.field(default_factory=lambda: list(default), metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def _type_name(hint: Any, article: bool = False) -> str:
    name = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))
    if typing.get_origin(hint) is list:
        name = f"list of {_type_name(typing.get_args(hint)[0])}s"
    if not article:
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def show(value: Any) -> str:
    """A value as TOML writes it (strings in double quotes)."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{show(value)} ({kind.get(type(value), type(value).__name__)})"
