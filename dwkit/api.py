"""`dwkit.load`: a ready Transcriber from a config file, a Config, or a model directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dwkit.config import Config
from dwkit.errors import ConfigError
from dwkit.transcriber import Transcriber


def load(config: Config | str | os.PathLike[str], **overrides: Any) -> Transcriber:
    """Build a Transcriber, checked and ready to `transcribe(audio)` / `transcribe_batch(audios)`.

    `config` is a `Config`, a path to a TOML config file (DWKIT_* environment variables
    override its keys, as documented in dwkit.config), or a model directory / hub id (the
    defaults for everything else, environment ignored). `overrides` are config keys that win
    over both, e.g. `load("prod.toml", device="cuda", decode={"beam_size": 5})`.

    The Transcriber is safe to share between threads: calls run one at a time on the backend
    while audio decoding and features of other calls proceed.
    """
    return build(as_config(config, overrides))


def build(config: Config, backend_options: Mapping[str, object] | None = None) -> Transcriber:
    """The Transcriber of a validated Config: resolves the model, checks the combinations and
    `backend = "auto"`; `backend_options` are the backend's own settings (--backend-option)."""
    model_dir = config.resolve_model()
    config.check(model_dir)
    runtime = replace(config.to_runtime_config(), options=dict(backend_options or {}))
    draft = config.to_draft_options()
    if draft is not None:
        draft = replace(draft, model=str(config.resolve_model("draft.model")))
    return Transcriber.from_model_dir(
        model_dir, config.resolved_backend, runtime, config.to_longform_options(), draft
    )


def as_config(config: Config | str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Config:
    """The Config that `load` would use: values validated; combinations are checked by `load`
    once the model directory is known (a hub id is fetched first)."""
    if isinstance(config, Config):
        if not overrides:
            return config
        return Config.from_dict(config.to_dict(), source=config.source, overrides=overrides, check=False)
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(
            f"dwkit.load takes a Config, a .toml path or a model directory, not {type(config).__name__}"
        )
    path = Path(config).expanduser()
    if path.is_file() or path.suffix == ".toml":
        return Config.from_file(path, overrides=overrides, check=False)
    return Config.from_dict({"model": str(config)}, overrides=overrides, check=False)
