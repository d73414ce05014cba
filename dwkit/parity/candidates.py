"""A candidate of the gate: `BACKEND:PATH[:PRECISION]` or an encoder/decoder pair
`ENC[:PREC]+DEC[:PREC]:PATH` (runtimes/pair.py; PATH is the transformers checkpoint), and the
checks made before anything runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dwkit.errors import ConfigError, ModelError
from dwkit.parity.config import BASELINE_PRECISION
from dwkit.runtimes.pair import PairSpec, is_pair

_NAME = r"[A-Za-z0-9_.-]+"
_PAIR = re.compile(rf"^({_NAME}(?::{_NAME})?\+{_NAME}(?::{_NAME})?):(.+)$")


@dataclass(frozen=True)
class Candidate:
    """One model to gate: `BACKEND:PATH[:PRECISION]`."""

    backend: str
    path: Path
    precision: str | None  # as given; None: the model's own
    spec: str

    @classmethod
    def parse(cls, spec: str) -> Candidate:
        from dwkit.runtimes import names

        paired = _PAIR.match(spec) if "+" in spec.split("/")[0] else None
        if paired:
            pair = PairSpec.parse(paired.group(1))
            return cls(pair.text, Path(paired.group(2)).expanduser(), None, spec)
        backend, sep, rest = spec.partition(":")
        if not sep or not rest or backend not in names():
            raise ConfigError(
                f"candidate {spec!r}: expected BACKEND:PATH[:PRECISION] with BACKEND one of {', '.join(names())}"
            )
        path, precision = rest, None
        head, sep, tail = rest.rpartition(":")
        if sep and head and tail and "/" not in tail and not Path(rest).expanduser().exists():
            path, precision = head, tail
        return cls(backend, Path(path).expanduser(), precision, spec)

    def resolve_precision(self) -> str:
        """The precision it runs at: as given, else hf's fp32, else the manifest's, checked against the backend."""
        from dwkit.manifest import read_manifest
        from dwkit.runtimes import backend_of, spec

        if not self.path.exists():
            raise ModelError(f"candidate {self.spec!r}: {self.path}: no such model directory")
        if is_pair(self.backend):
            return self._pair_precision()
        found = backend_of(self.path)
        declared = spec(self.backend)
        if found not in declared.formats:
            raise ConfigError(f"candidate {self.spec!r}: {self.path} is a {found} model, not {self.backend}")
        known = declared.accepted_precisions
        if self.precision is not None:
            if self.precision not in known:
                raise ConfigError(
                    f"candidate {self.spec!r}: {self.backend} precision {self.precision!r}; "
                    f"choose one of {', '.join(known)}"
                )
            return self.precision
        if found == "hf":
            return declared.default_precision or BASELINE_PRECISION
        stored = (read_manifest(self.path) or {}).get("precision") if self.path.is_dir() else None
        if not stored:  # a faster-whisper directory or a whisper.cpp file: what its weights hold
            from dwkit.foreign import stored_precision

            stored = stored_precision(self.path)
        if not stored:
            raise ConfigError(
                f"candidate {self.spec!r}: {self.path} does not record its precision; "
                f"give it as {self.backend}:PATH:PRECISION"
            )
        return str(stored)

    def _pair_precision(self) -> str:
        """A pair is gated at the thresholds of its looser side (hf:bf16+ct2:int8: int8's)."""
        from dwkit.parity.config import ParityConfig
        from dwkit.runtimes import backend_of

        pair = PairSpec.parse(self.backend)
        if backend_of(self.path) != "hf":
            raise ConfigError(
                f"candidate {self.spec!r}: a pair is gated from the transformers checkpoint; "
                f"{self.path} is a {backend_of(self.path)} model"
            )
        precisions = [side.resolved_precision() for side in (pair.encoder, pair.decoder)]
        config = ParityConfig.load()
        order = list(config.data["thresholds"])
        return max(precisions, key=lambda p: order.index(config.precision_table(p)))


def check_available(backend: str) -> None:
    """Raise BackendUnavailable, with its reason, when `backend` (or a side of a pair) cannot
    run on this machine."""
    from dwkit.errors import BackendUnavailable
    from dwkit.runtimes import unavailable_reason

    pair = PairSpec.parse(backend) if is_pair(backend) else None
    for name in (pair.encoder.backend, pair.decoder.backend) if pair else (backend,):
        reason = unavailable_reason(name)
        if reason:
            raise BackendUnavailable(f"backend {name}: {reason}")
