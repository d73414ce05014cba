"""What the shared pipeline needs to know about a model, independent of its format.

Read from a transformers checkpoint (config.json + generation_config.json) and copied into
every converted directory's manifest under "model_info", so a CTranslate2, ONNX or GGML
directory describes itself the same way without transformers installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dwkit.errors import ModelError
from dwkit.manifest import read_json_object, read_manifest

# The alignment of timestamp tokens: each one is 20 ms (2 mel frames of 10 ms).
TIME_PRECISION = 0.02


@dataclass
class ModelInfo:
    """Shape and special-token facts of one Whisper model."""

    n_mels: int
    vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    ffn_dim: int
    n_audio_ctx: int  # encoder positions (1500 for 30 s)
    n_text_ctx: int  # decoder positions (448)
    multilingual: bool
    eot: int
    sot: int
    sot_prev: int
    no_timestamps: int
    transcribe: int | None = None
    translate: int | None = None
    lang_to_id: dict[str, int] = field(default_factory=dict)
    suppress_tokens: list[int] = field(default_factory=list)
    begin_suppress_tokens: list[int] = field(default_factory=list)
    max_initial_timestamp_index: int = 50
    alignment_heads: list[list[int]] = field(default_factory=list)

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @property
    def no_speech(self) -> int:
        """`<|nospeech|>` (`<|nocaptions|>` in older vocabularies) sits just before notimestamps."""
        return self.no_timestamps - 1

    @property
    def language_codes(self) -> list[str]:
        return [token[2:-2] for token in self.lang_to_id]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_hf_dir(cls, model_dir: str | Path) -> ModelInfo:
        """Read a transformers checkpoint's config.json and generation_config.json."""
        model_dir = Path(model_dir)
        config = _read_json(model_dir / "config.json")
        gen_path = model_dir / "generation_config.json"
        gen = _read_json(gen_path) if gen_path.is_file() else {}
        if config.get("model_type") != "whisper":
            raise ModelError(f"{model_dir}: config.json is not a Whisper config")
        if gen.get("no_timestamps_token_id") is None:
            raise ModelError(f"{gen_path}: missing no_timestamps_token_id (not a Whisper checkpoint?)")
        try:
            return cls._from_hf_configs(config, gen)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"{model_dir}: config.json or generation_config.json lacks or mistypes a Whisper "
                f"setting ({type(exc).__name__}: {exc})"
            ) from exc

    @classmethod
    def _from_hf_configs(cls, config: dict[str, Any], gen: dict[str, Any]) -> ModelInfo:
        lang_to_id = dict(gen.get("lang_to_id") or {})
        task_to_id = dict(gen.get("task_to_id") or {})
        no_timestamps = int(gen["no_timestamps_token_id"])
        return cls(
            n_mels=int(config["num_mel_bins"]),
            vocab_size=int(config["vocab_size"]),
            d_model=int(config["d_model"]),
            encoder_layers=int(config["encoder_layers"]),
            decoder_layers=int(config["decoder_layers"]),
            encoder_heads=int(config["encoder_attention_heads"]),
            decoder_heads=int(config["decoder_attention_heads"]),
            ffn_dim=int(config["encoder_ffn_dim"]),
            n_audio_ctx=int(config["max_source_positions"]),
            n_text_ctx=int(config["max_target_positions"]),
            multilingual=bool(gen.get("is_multilingual", bool(lang_to_id))),
            eot=int(gen.get("eos_token_id", config.get("eos_token_id"))),
            sot=int(gen.get("decoder_start_token_id", config.get("decoder_start_token_id"))),
            sot_prev=int(gen.get("prev_sot_token_id", no_timestamps - 2)),
            no_timestamps=int(no_timestamps),
            transcribe=task_to_id.get("transcribe"),
            translate=task_to_id.get("translate"),
            lang_to_id=lang_to_id,
            suppress_tokens=list(gen.get("suppress_tokens") or []),
            begin_suppress_tokens=list(gen.get("begin_suppress_tokens") or []),
            max_initial_timestamp_index=int(gen.get("max_initial_timestamp_index", 50)),
            alignment_heads=[list(h) for h in gen.get("alignment_heads") or []],
        )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ModelInfo:
        """A converted directory's manifest, else the transformers config files."""
        manifest = read_manifest(model_dir)
        if manifest and "model_info" in manifest:
            try:
                return cls.from_dict(manifest["model_info"])
            except (TypeError, AttributeError) as exc:
                raise ModelError(
                    f"{Path(model_dir) / 'dwkit.json'}: model_info is incomplete or mistyped ({exc}); "
                    "convert the model again"
                ) from exc
        return cls.from_hf_dir(model_dir)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: missing (not a model directory?)")
    return read_json_object(path)
