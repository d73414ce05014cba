"""Command-line flags, derived from the options schema (dwkit.schema), shared by transcribe and demo.

Every config key gets a flag: its spelling, help and default come from the field's declaration
in DecodeOptions, LongformOptions or Config, and its value is read and validated by the same
reader as the config file's and the environment's (`Config.from_dict(flags=...)`), so a flag
gets exactly the checks and messages a config key gets. A flag that is not typed is absent
from the namespace (argparse.SUPPRESS), so it overrides nothing in a config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from dwkit.config import Config
from dwkit.decoding.assisted import DraftOptions
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.schema import hints, key_fields, spec_of, unwrap

RUNTIME_KEYS = ("model", "backend", "device", "precision", "threads")
DRAFT = "draft."
_METAVARS: dict[Any, str] = {int: "N", float: "X"}


@dataclass(frozen=True)
class Flag:
    """One config key's command-line flag."""

    dest: str  # the dotted config key (decode.beam_size), also the argparse dest
    spelling: str  # --beam-size
    field: dataclasses.Field  # type: ignore[type-arg]
    hint: Any


@cache
def schema_flags() -> dict[str, Flag]:
    """Every config key's flag, by dotted key: Config's own keys, then [longform]'s, [decode]'s, [draft]'s."""
    flags: dict[str, Flag] = {}
    tables = ((Config, ""), (LongformOptions, "longform"), (DecodeOptions, "decode"), (DraftOptions, "draft"))
    for cls, table in tables:
        types_ = hints(cls)
        for f in key_fields(cls):
            spec = spec_of(f)
            dest = f.name if spec.top else f"{table}.{f.name}"
            flags.setdefault(
                dest, Flag(dest, spec.flag or "--" + f.name.replace("_", "-"), f, types_[f.name])
            )
    return flags


def add_flags(group: argparse._ActionsContainer, keys: list[str]) -> None:
    """Add the flags of these config keys (dotted names) to a parser or argument group."""
    for key in keys:
        flag = schema_flags()[key]
        spec = spec_of(flag.field)
        names = [flag.spelling, *([spec.short] if spec.short else [])]
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS, "help": _help(flag)}
        inner, _ = unwrap(flag.hint)
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(inner) in (list, tuple):
            item = _METAVARS[typing.get_args(inner)[0]]
            kwargs.update(action="append", metavar=f"{item}[,{item}...]")
        elif spec.choices:
            kwargs["metavar"] = "{" + ",".join(spec.allowed() or ()) + "}"
        else:
            kwargs["metavar"] = _METAVARS.get(inner) or flag.field.name.upper()
        group.add_argument(*names, **kwargs)


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    add_flags(group, list(RUNTIME_KEYS))
    group.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend-specific setting, repeatable (e.g. ggml flash_attn=false, onnx provider=tensorrt)",
    )


def add_longform_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("long-form (defaults: distil-whisper's recommendations)")
    keys = [
        k
        for k in schema_flags()
        if k not in RUNTIME_KEYS and k != "output_format" and not k.startswith(DRAFT)
    ]
    add_flags(group, keys)


def add_draft_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "speculative decoding (a draft model proposes, the main model verifies: the main model's greedy output)"
    )
    add_flags(group, [k for k in schema_flags() if k.startswith(DRAFT)])


def config_flags(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """The flags typed, as `Config.from_dict(flags=...)` reads them: key -> (value, flag).

    A repeated list flag joins its values (`--temperature 0 --temperature 0.2` is `0,0.2`).
    """
    typed = vars(args)
    found: dict[str, tuple[Any, str]] = {}
    for key, flag in schema_flags().items():
        if key in typed:
            value = typed[key]
            found[key] = (",".join(value) if isinstance(value, list) else value, flag.spelling)
    return found


def parse_backend_options(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs; values read as booleans, integers or floats where they look like one."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--backend-option {item!r}: expected KEY=VALUE")
        lowered = raw.lower()
        value: object = raw
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        options[key] = value
    return options


def _help(flag: Flag) -> str:
    spec = spec_of(flag.field)
    default = flag.field.default
    if isinstance(default, tuple):
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    if isinstance(default, bool):
        default = str(default).lower()
    shown = "" if default is None else f" (default: {default})"
    optional = " (none unsets it)" if unwrap(flag.hint)[1] and default is not None else ""
    return f"{spec.help}{shown}{optional}".replace("%", "%%")
