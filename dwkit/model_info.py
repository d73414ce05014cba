"""What the shared pipeline needs to know about a model, independent of its format.

Read from a transformers checkpoint (config.json + generation_config.json) and copied into
every converted directory's manifest under "model_info", so a CTranslate2, ONNX or GGML
directory describes itself the same way without transformers installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dwkit.constants import TIME_PRECISION  # noqa: F401 - re-exported: 20 ms per timestamp token
from dwkit.errors import ModelError
from dwkit.manifest import read_json_object, read_manifest


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
        _check_config_types(model_dir / "config.json", config)
        try:
            info = cls._from_hf_configs(config, gen)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"{model_dir}: config.json or generation_config.json lacks or mistypes a Whisper "
                f"setting ({type(exc).__name__}: {exc})"
            ) from exc
        _check_against_weights(model_dir, config)
        return info

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
        """A converted directory's manifest, else what a foreign layout carries (a faster-whisper
        directory, a whisper.cpp file: `dwkit.foreign`), else the transformers config files."""
        manifest = read_manifest(model_dir)
        if manifest and "model_info" in manifest:
            try:
                return cls.from_dict(manifest["model_info"])
            except (TypeError, AttributeError) as exc:
                raise ModelError(
                    f"{Path(model_dir) / 'dwkit.json'}: model_info is incomplete or mistyped ({exc}); "
                    "convert the model again"
                ) from exc
        from dwkit import foreign

        return foreign.model_info(Path(model_dir)) or cls.from_hf_dir(model_dir)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: missing (not a model directory?)")
    return read_json_object(path)


# The JSON kind of each WhisperConfig setting (its constructor's defaults, transformers 4.57).
# transformers accepts any value and fails much later, mid-inference (dropout=None is a
# TypeError in the first forward pass), so a mistyped config.json is refused on reading.
_NUMBER, _INT, _BOOL, _STR = (int, float), int, bool, str
CONFIG_KINDS: dict[str, tuple[type, ...] | type] = {
    **dict.fromkeys(
        ["vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "num_hidden_layers"],
        _INT,
    ),
    **dict.fromkeys(
        ["encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim"], _INT
    ),
    **dict.fromkeys(["max_source_positions", "max_target_positions", "classifier_proj_size"], _INT),
    **dict.fromkeys(["bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"], _INT),
    **dict.fromkeys(["mask_time_length", "mask_time_min_masks", "mask_feature_length"], _INT),
    **dict.fromkeys(["mask_feature_min_masks", "median_filter_width"], _INT),
    **dict.fromkeys(["dropout", "attention_dropout", "activation_dropout", "init_std"], _NUMBER),
    **dict.fromkeys(
        ["encoder_layerdrop", "decoder_layerdrop", "mask_time_prob", "mask_feature_prob"], _NUMBER
    ),
    **dict.fromkeys(["use_cache", "scale_embedding", "use_weighted_layer_sum", "apply_spec_augment"], _BOOL),
    **dict.fromkeys(["is_encoder_decoder", "tie_word_embeddings"], _BOOL),
    **dict.fromkeys(["activation_function", "model_type", "transformers_version", "dtype"], _STR),
    "architectures": list,
    "begin_suppress_tokens": (list, type(None)),
    "suppress_tokens": (list, type(None)),
}


def _check_config_types(path: Path, config: dict[str, Any]) -> None:
    for key, kinds in CONFIG_KINDS.items():
        if key not in config:
            continue
        value = config[key]
        allowed = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in allowed)
            raise ModelError(
                f"{path}: {key} is {json_repr(value)}, not a {names} (a damaged or edited config)"
            )


def json_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# weight name in a transformers Whisper checkpoint -> the config sizes its shape must equal
_SHAPES = {
    "model.encoder.conv1.weight": ("d_model", "num_mel_bins", None),
    "model.encoder.embed_positions.weight": ("max_source_positions", "d_model"),
    "model.decoder.embed_positions.weight": ("max_target_positions", "d_model"),
    "model.decoder.embed_tokens.weight": ("vocab_size", "d_model"),
    "model.encoder.layers.0.fc1.weight": ("encoder_ffn_dim", "d_model"),
}


def _check_against_weights(model_dir: Path, config: dict[str, Any]) -> None:
    """Refuse config.json sizes the safetensors weights do not have, before anything is built.

    Reads only the safetensors header (names and shapes). Without this an edited size is
    built first: `encoder_layers: 10**9` allocates until the machine gives out, and a wrong
    d_model surfaces as a torch size-mismatch dump. Weights that cannot be read are left to
    the loader, which names the problem.
    """
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return
    try:
        from safetensors import safe_open

        handles = [safe_open(str(f), framework="np") for f in files]
        shapes = {name: tuple(h.get_slice(name).get_shape()) for h in handles for name in h.keys()}
    except Exception:  # noqa: BLE001 - a truncated or corrupt file: the loader reports it
        return
    for name, dims in _SHAPES.items():
        if name in shapes and len(shapes[name]) == len(dims):
            for key, actual in zip(dims, shapes[name]):
                if key is not None and key in config and config[key] != actual:
                    raise ModelError(
                        f"{model_dir}: could not load it: config.json says {key} = {config[key]} but the "
                        f"weights have {actual} ({name}); the config does not belong to these weights"
                    )
    for part in ("encoder", "decoder"):
        layers = config[f"{part}_layers"]
        found = {int(n.split(".")[3]) for n in shapes if n.startswith(f"model.{part}.layers.")}
        if found and max(found) + 1 != layers:
            raise ModelError(
                f"{model_dir}: could not load it: config.json says {part}_layers = {layers} but the "
                f"weights hold {max(found) + 1}; the config does not belong to these weights"
            )
    d_model = config["d_model"]
    for heads in (config["encoder_attention_heads"], config["decoder_attention_heads"]):
        if heads < 1 or d_model % heads:
            raise ModelError(
                f"{model_dir}/config.json: {heads} attention heads do not divide d_model {d_model}"
            )
