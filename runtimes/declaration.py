"""What a backend declares about itself, once, in its own module.

A backend module ends with one `BACKEND = BackendSpec(...)`. Everything the rest of dwkit
knows about a backend (config validation, CLI choices, what `auto` prefers, bench and parity
defaults, `dwkit backends`, `dwkit info`) is read from that declaration through
`dwkit.runtimes.registry`, so adding a backend means writing its module and nothing else.
Third-party distributions publish the same object through the `dwkit.backends` entry point
group (value `module:DECLARATION`) and are then indistinguishable from the built-in ones.

The declaration must be cheap to import: the backend's library (torch, ctranslate2, ...) is
imported only inside `probe` and the backend class's `from_model_dir`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwkit import devices
from dwkit.errors import ConfigError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class BackendOption:
    """One `--backend-option KEY=VALUE` (config: `[runtime]` options) a backend reads."""

    name: str
    type: type  # bool, int, float or str
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, value: Any, backend: str) -> Any:
        """`value` (text from the command line or the environment, or a TOML value) as `type`."""
        where = f"{backend} backend option {self.name}"
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ConfigError(f"{where}={value!r}: expected true or false")
        if self.type in (int, float) and not isinstance(value, bool):
            try:
                return self.type(value)
            except (TypeError, ValueError):
                pass
            raise ConfigError(
                f"{where}={value!r}: expected {'an integer' if self.type is int else 'a number'}"
            )
        if self.type is str and isinstance(value, (str, Path)):
            text = str(value)
            if self.choices and text not in self.choices:
                raise ConfigError(f"{where}={text!r}: choose one of {', '.join(self.choices)}")
            return text
        raise ConfigError(f"{where}={value!r}: expected a {self.type.__name__}")


@dataclass(frozen=True)
class BackendSpec:
    """A backend's facts: its name, what it reads, how it is installed and what it accepts."""

    name: str
    summary: str  # one line for `dwkit backends`
    backend_class: type  # has `from_model_dir(model_dir: Path, config: RuntimeConfig)`
    formats: tuple[str, ...]  # model directory formats it runs (dwkit.json "format"; "hf")
    extra: str  # the pip extra that installs its libraries: pip install 'dwkit[EXTRA]'
    precisions: tuple[str, ...]  # the format's own precision names
    probe: Callable[[str], str | None]  # why it cannot run on this device here, or None
    # Top-level modules it imports, looked up (never imported) when a config is validated.
    requires: tuple[str, ...] = ()
    install_hint: str = ""  # how to get `requires`; default: pip install 'dwkit[EXTRA]'
    aliases: tuple[str, ...] = ()  # accepted besides `precisions` (ct2's "default", "auto")
    default_precision: str | None = None  # None: the model's own precision
    # Precisions that need a GPU (None: every precision runs on every device it lists).
    gpu_only_precisions: tuple[str, ...] = ()
    # Runs a converted directory only at the precision it was converted to (onnx, ggml).
    fixed_precision: bool = False
    devices: tuple[str, ...] = ("cpu",)  # "cpu" and/or "cuda"
    options: tuple[BackendOption, ...] = ()
    weight_files: tuple[str, ...] = ()  # glob patterns of its weight files in a model directory
    # Missing or truncated weight files of a directory (from names and headers only), for
    # `dwkit info`: (model_dir, manifest or {}) -> problems.
    file_problems: Callable[[Path, Mapping[str, Any]], list[str]] | None = None
    # A model without a dwkit.json that this backend runs, recognised by its own files (a
    # transformers checkpoint, a faster-whisper directory, a whisper.cpp file or its directory).
    recognise: Callable[[Path], bool] | None = None
    # Recognisers are asked highest rank first: a specific layout outranks a loose one (a
    # faster-whisper directory holds a config.json too, which is all the hf recogniser asks).
    recognise_rank: int = 0
    # Among the backends that run one format, `auto` tries the highest rank first.
    auto_rank: int = 0
    bench_precision: str | None = None  # `dwkit bench --backends NAME` without a precision
    parity_precision: str | None = None  # what parity self-tests convert to (most faithful on CPU)

    @property
    def accepted_precisions(self) -> tuple[str, ...]:
        return self.precisions + self.aliases

    @property
    def gpu_only(self) -> bool:
        return "cpu" not in self.devices

    def missing_library(self) -> str | None:
        """Which required module is not installed (found without importing it), with the fix."""
        for module in self.requires:
            if not devices.module_installed(module):
                return self.install_hint or f"needs {module}: pip install 'dwkit[{self.extra}]'"
        return None

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Typed options; an unknown key is an error that lists the known ones."""
        known = {option.name: option for option in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            listed = ", ".join(known) if known else "none"
            raise ConfigError(f"{self.name} backend options {', '.join(unknown)} unknown; it reads: {listed}")
        return {  # None leaves an option at the backend's default
            key: None if value is None else known[key].parse(value, self.name)
            for key, value in options.items()
        }

    def precision_problem(self, precision: str, device: str) -> str | None:
        """Why `precision` cannot be used on `device`, or None."""
        if precision not in self.accepted_precisions:
            return f"is not a {self.name} precision; choose one of {', '.join(self.accepted_precisions)}"
        if precision in self.gpu_only_precisions and not device.startswith("cuda"):
            usable = ", ".join(p for p in self.precisions if p not in self.gpu_only_precisions)
            return f"with {self.name} needs a CUDA device; on CPU use {usable}"
        return None


def missing_file_problems(model_dir: Path, name: str) -> list[str]:
    """A model directory's one weight file, missing or empty: the check ct2 and ggml share."""
    path = model_dir / name
    if not path.is_file():
        return [f"{name}: missing (an incomplete copy or conversion?)"]
    if path.stat().st_size == 0:
        return [f"{name}: empty (0 bytes)"]
    return []
