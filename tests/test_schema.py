"""The options schema: each field declared once, and every way in derived from it."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from dwkit.cli.main import build_parser
from dwkit.cli.options import config_flags, schema_flags
from dwkit.config import TABLES, Config
from dwkit.decoding.options import DecodeOptions
from dwkit.errors import ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.parity import ParityConfig
from dwkit.schema import flat_values, hints, key_fields, spec_of


def test_config_tables_are_the_options_fields():
    assert [f.name for f in dataclasses.fields(TABLES["decode"])] == [
        f.name for f in key_fields(DecodeOptions)
    ]
    assert [f.name for f in dataclasses.fields(TABLES["longform"])] == [
        f.name for f in key_fields(LongformOptions, top=False)
    ]
    decode_defaults = DecodeOptions()
    for f in dataclasses.fields(TABLES["decode"]):
        assert getattr(TABLES["decode"](), f.name) == getattr(decode_defaults, f.name)


def test_top_level_keys_of_the_options_have_their_type_default_and_rule_in_config():
    config_hints, option_hints = hints(Config), hints(LongformOptions)
    config_fields = {f.name: f for f in dataclasses.fields(Config)}
    for f in key_fields(LongformOptions, top=True):
        assert config_hints[f.name] == option_hints[f.name]
        assert config_fields[f.name].default == f.default
        assert spec_of(config_fields[f.name]) == spec_of(f)


def test_options_objects_check_their_own_rules():
    with pytest.raises(ConfigError, match="beam_size = 0: must be >= 1"):
        DecodeOptions(beam_size=0)
    with pytest.raises(ConfigError, match="no_speech_threshold = 5: must be <= 1"):
        LongformOptions(no_speech_threshold=5)
    with pytest.raises(ConfigError, match="temperatures: must not be empty"):
        LongformOptions(temperatures=())


def test_environment_variables_exist_for_every_key():
    env = {"DWKIT_THREADS": "2", "DWKIT_MODE": "chunked"}
    env |= {
        f"DWKIT_DECODE__{f.name.upper()}": "none"
        for f in key_fields(DecodeOptions)
        if _optional(DecodeOptions, f)
    }
    config = Config.from_dict({}, env=env, check=False)
    assert config.threads == 2 and config.mode == "chunked"
    assert all(
        config.origins[f"decode.{f.name}"].startswith("environment")
        for f in key_fields(DecodeOptions)
        if _optional(DecodeOptions, f)
    )


def _optional(cls: type, f: dataclasses.Field) -> bool:
    return type(None) in typing.get_args(hints(cls)[f.name])


@pytest.mark.parametrize(
    "table, message",
    [
        ('temperatures = "hot"', "temperatures: expected a list of numbers"),
        ("no_speech_threshold = 2.0", "no_speech_threshold = 2.0: must be <= 1"),
        ("beam = 2", "beam: unknown key"),
        ("[longform.decode]\nbeam_size = 0", "decode: beam_size = 0: must be >= 1"),
    ],
)
def test_parity_longform_table_gets_the_same_validation(tmp_path, table, message):
    path = tmp_path / "parity.toml"
    path.write_text(f"[longform]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        ParityConfig.load(path).longform("sequential")
    assert message in str(info.value) and "[longform]" in str(info.value)


def test_parity_longform_table_reaches_the_options(tmp_path):
    path = tmp_path / "parity.toml"
    path.write_text("[longform]\ntemperatures = [0.0, 0.5]\n[longform.decode]\nbeam_size = 2\n")
    options = ParityConfig.load(path).longform("chunked")
    assert options.mode == "chunked" and options.temperatures == (0.0, 0.5) and options.decode.beam_size == 2


def test_flat_values_name_every_key_once():
    values = flat_values(LongformOptions())
    keys = [f.name for f in key_fields(LongformOptions)] + [f.name for f in key_fields(DecodeOptions)]
    assert sorted(values) == sorted(keys) and values["temperatures"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


# --- command-line flags ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--temperature", "0,0.2", "a.wav"],
        ["--temperature", "0", "--temperature", "0.2", "a.wav"],
        ["a.wav", "--temperature=0,0.2"],
        ["--temperature", "[0, 0.2]", "a.wav"],
    ],
)
def test_temperature_as_a_comma_list_or_repeated(argv):
    args = build_parser().parse_args(["transcribe", *argv])
    assert args.audio == ["a.wav"]
    config = Config.from_dict({}, flags=config_flags(args), check=False)
    assert config.longform.temperatures == [0.0, 0.2]
    assert config.to_longform_options().temperatures == (0.0, 0.2)


def test_every_config_key_has_exactly_one_flag():
    # the engine's keys; [serve] and [batch] belong to their own commands (dwkit serve / batch)
    keys = {f.name for f in key_fields(Config) if f.name not in TABLES}
    keys |= {
        f"{table}.{f.name}" for table in ("decode", "longform", "draft") for f in key_fields(TABLES[table])
    }
    assert set(schema_flags()) == keys
    spellings = [flag.spelling for flag in schema_flags().values()]
    assert len(spellings) == len(set(spellings))
    # every flag the transcribe parser has for a key writes that key
    parser = build_parser()
    args = parser.parse_args(["transcribe", "a.wav"])
    assert not set(config_flags(args))  # untyped flags override nothing


def test_boolean_flags_both_ways():
    parse = build_parser().parse_args
    flags = config_flags(parse(["transcribe", "a.wav", "--no-timestamps", "--condition-on-prev-tokens"]))
    config = Config.from_dict({}, flags=flags, check=False)
    assert config.longform.return_timestamps is False and config.longform.condition_on_prev_tokens is True
    flags = config_flags(parse(["transcribe", "a.wav", "--no-speech-threshold", "none"]))
    assert Config.from_dict({}, flags=flags, check=False).longform.no_speech_threshold is None
