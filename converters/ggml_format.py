"""whisper.cpp's model file (the legacy ggml format), described as data and written as a stream.

Layout (little-endian), as whisper.cpp 1.8.5's `whisper_model_load` reads it:

    int32 magic 0x67676d6c ("ggml")
    int32 x 11 hparams (HPARAMS below, ftype last)
    int32 n_mel, int32 n_fft (201), float32 filters [n_mel, n_fft]
    int32 count, then per token: uint32 length + raw bytes (ids 0..eot-1; whisper.cpp adds
          the special and timestamp tokens itself)
    per tensor: int32 n_dims, int32 name length, int32 ggml type, int32 dims (innermost
          first, i.e. the numpy shape reversed), name bytes, data

No alignment padding anywhere. whisper.cpp finds tensors by name, refuses unknown names and
missing ones, and checks each tensor's shape and byte size against the type it expects:
1-D tensors, conv biases and positional embeddings are float32, conv weights float16
(even in f32 files: 1.8.5 aborts on f32 conv kernels), and every other 2-D weight is the file's "weight type"
(f32, f16 or a quantised type). `tensor_type` encodes exactly that.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

GGML_MAGIC = 0x67676D6C
HPARAMS = (
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
    "ftype",
)
N_FFT_BINS = 201  # 1 + 400 // 2

# ggml_type ids (the per-tensor type field) and block sizes: (elements, bytes) per block.
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q5_0": 6, "q8_0": 8}
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 6: (32, 22), 8: (32, 34)}
TYPE_NAMES = {v: k for k, v in GGML_TYPES.items()}
# ggml_ftype ids (the header's ftype field; note q5_0/q8_0 differ from their ggml_type ids).
# Quantised files add QNT_VERSION * 1000, as whisper.cpp's quantize tool writes them.
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q5_0": 8}
QNT_VERSION = 2
QNT_VERSION_FACTOR = 1000

# transformers name -> whisper.cpp name. "{L}" matches a layer index. The tied `proj_out`
# is not stored (whisper.cpp projects with the token embedding).
NAME_MAP: tuple[tuple[str, str], ...] = (
    ("model.encoder.conv1.", "encoder.conv1."),
    ("model.encoder.conv2.", "encoder.conv2."),
    ("model.encoder.embed_positions.weight", "encoder.positional_embedding"),
    ("model.encoder.layer_norm.", "encoder.ln_post."),
    ("model.decoder.embed_tokens.weight", "decoder.token_embedding.weight"),
    ("model.decoder.embed_positions.weight", "decoder.positional_embedding"),
    ("model.decoder.layer_norm.", "decoder.ln."),
    ("model.{part}.layers.{L}.self_attn.q_proj.", "{part}.blocks.{L}.attn.query."),
    ("model.{part}.layers.{L}.self_attn.k_proj.", "{part}.blocks.{L}.attn.key."),
    ("model.{part}.layers.{L}.self_attn.v_proj.", "{part}.blocks.{L}.attn.value."),
    ("model.{part}.layers.{L}.self_attn.out_proj.", "{part}.blocks.{L}.attn.out."),
    ("model.{part}.layers.{L}.self_attn_layer_norm.", "{part}.blocks.{L}.attn_ln."),
    ("model.{part}.layers.{L}.encoder_attn.q_proj.", "{part}.blocks.{L}.cross_attn.query."),
    ("model.{part}.layers.{L}.encoder_attn.k_proj.", "{part}.blocks.{L}.cross_attn.key."),
    ("model.{part}.layers.{L}.encoder_attn.v_proj.", "{part}.blocks.{L}.cross_attn.value."),
    ("model.{part}.layers.{L}.encoder_attn.out_proj.", "{part}.blocks.{L}.cross_attn.out."),
    ("model.{part}.layers.{L}.encoder_attn_layer_norm.", "{part}.blocks.{L}.cross_attn_ln."),
    ("model.{part}.layers.{L}.fc1.", "{part}.blocks.{L}.mlp.0."),
    ("model.{part}.layers.{L}.fc2.", "{part}.blocks.{L}.mlp.2."),
    ("model.{part}.layers.{L}.final_layer_norm.", "{part}.blocks.{L}.mlp_ln."),
)
DROPPED = ("proj_out.weight",)
# 2-D tensors that stay float32 whatever the weight type (whisper.cpp creates them so).
FLOAT32_2D = (
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
)


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\{part\}", "(?P<part>encoder|decoder)")
    return re.compile("^" + regex.replace(r"\{L\}", r"(?P<L>\d+)"))


_NAME_RULES = [(_compile(src), dst) for src, dst in NAME_MAP]


def ggml_name(hf_name: str) -> str | None:
    """whisper.cpp's name for a transformers parameter; None for tensors the file omits."""
    if hf_name in DROPPED:
        return None
    for regex, template in _NAME_RULES:
        match = regex.match(hf_name)
        if match:
            prefix = template.format(**match.groupdict())
            return prefix + hf_name[match.end() :]
    raise KeyError(f"no whisper.cpp name for tensor {hf_name!r}")


def tensor_type(name: str, ndim: int, precision: str) -> int:
    """The ggml type whisper.cpp expects for tensor `name` in a file of `precision`."""
    if ndim < 2 or name in FLOAT32_2D:
        return GGML_TYPES["f32"]
    if ndim == 3:  # conv weights
        return GGML_TYPES["f32" if precision == "f32" else "f16"]
    return GGML_TYPES[precision]


def header_ftype(precision: str) -> int:
    ftype = FTYPES[precision]
    return ftype + QNT_VERSION * QNT_VERSION_FACTOR if precision.startswith("q") else ftype


def file_shape(name: str, array: np.ndarray) -> np.ndarray:
    """whisper.cpp keeps conv biases as [n, 1] (ne = [1, n])."""
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        return array.reshape(array.shape[0], 1)
    return array


def encode_tensor(array: np.ndarray, ggml_type: int) -> np.ndarray:
    """The bytes of `array` in `ggml_type` (blocks run along the last, innermost axis)."""
    if ggml_type == GGML_TYPES["f32"]:
        return np.ascontiguousarray(array, dtype="<f4")
    if ggml_type == GGML_TYPES["f16"]:
        return np.ascontiguousarray(array, dtype="<f2")
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    block = BLOCKS[ggml_type][0]
    if array.shape[-1] % block:
        raise ValueError(f"rows of {array.shape[-1]} values do not split into blocks of {block}")
    return quantize(np.ascontiguousarray(array, dtype=np.float32), GGMLQuantizationType(ggml_type))


def n_bytes(dims: tuple[int, ...], ggml_type: int) -> int:
    elements, size = BLOCKS[ggml_type]
    return int(np.prod(dims)) // elements * size


# --- vocabulary ------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE tokens use it)."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def vocab_bytes(bpe_vocab: dict[str, int], count: int) -> list[bytes]:
    """Raw bytes of tokens 0..count-1 from a byte-level BPE vocabulary (token text -> id)."""
    decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    by_id: dict[int, str] = {i: token for token, i in bpe_vocab.items() if i < count}
    missing = [i for i in range(count) if i not in by_id]
    if missing:
        raise ValueError(f"tokenizer vocabulary lacks ids {missing[:5]} (of 0..{count - 1})")
    out = []
    for i in range(count):
        token = by_id[i]
        try:
            out.append(bytes(decoder[c] for c in token))
        except KeyError:  # a special token in the BPE table (<|endoftext|>): keep its text
            out.append(token.encode("utf-8"))
    return out


# --- writing ---------------------------------------------------------------------------------


def write_header(out: BinaryIO, hparams: dict[str, int], filters: np.ndarray, tokens: list[bytes]) -> None:
    """Magic, hparams, mel filters [n_mel, 201] and the BPE tokens."""
    out.write(struct.pack("<i", GGML_MAGIC))
    out.write(struct.pack("<11i", *(int(hparams[k]) for k in HPARAMS)))
    filters = np.ascontiguousarray(filters, dtype="<f4")
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<I", len(token)))
        out.write(token)


def write_tensor(out: BinaryIO, name: str, array: np.ndarray, ggml_type: int) -> None:
    """One tensor record; `array` is float data in numpy (outermost-first) order."""
    data = encode_tensor(array, ggml_type)
    dims = tuple(reversed(array.shape))
    raw = name.encode()
    out.write(struct.pack("<3i", array.ndim, len(raw), ggml_type))
    out.write(struct.pack(f"<{len(dims)}i", *dims))
    out.write(raw)
    if data.nbytes != n_bytes(dims, ggml_type):  # pragma: no cover - guards encode_tensor
        raise ValueError(f"{name}: {data.nbytes} bytes for {TYPE_NAMES[ggml_type]} {dims}")
    out.write(data.tobytes())


# --- reading back (tests, inspection) --------------------------------------------------------


@dataclass
class TensorRecord:
    name: str
    dims: tuple[int, ...]  # innermost first, as stored
    ggml_type: int
    offset: int  # of the data in the file
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order (outermost first)."""
        return tuple(reversed(self.dims))

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.ggml_type, str(self.ggml_type))


@dataclass
class GgmlFile:
    hparams: dict[str, int]
    filters: np.ndarray
    tokens: list[bytes]
    tensors: dict[str, TensorRecord] = field(default_factory=dict)

    def array(self, path: str | Path, name: str) -> np.ndarray:
        """A tensor's data: float32/float16 in numpy order, quantised ones as raw bytes."""
        rec = self.tensors[name]
        with open(path, "rb") as f:
            f.seek(rec.offset)
            raw = f.read(rec.nbytes)
        dtype = {0: "<f4", 1: "<f2"}.get(rec.ggml_type)
        if dtype is None:
            return np.frombuffer(raw, dtype=np.uint8)
        return np.frombuffer(raw, dtype=dtype).reshape(rec.shape)


def read_ggml(path: str | Path) -> GgmlFile:
    """Parse a whisper.cpp model file's header, vocabulary and tensor table (data is skipped)."""
    with open(path, "rb") as f:
        (magic,) = struct.unpack("<i", f.read(4))
        if magic != GGML_MAGIC:
            raise ValueError(f"{path}: not a ggml file (magic {magic:#x})")
        hparams = dict(zip(HPARAMS, struct.unpack("<11i", f.read(44))))
        n_mel, n_fft = struct.unpack("<2i", f.read(8))
        filters = np.frombuffer(f.read(4 * n_mel * n_fft), dtype="<f4").reshape(n_mel, n_fft)
        (count,) = struct.unpack("<i", f.read(4))
        tokens = []
        for _ in range(count):
            (length,) = struct.unpack("<I", f.read(4))
            tokens.append(f.read(length))
        result = GgmlFile(hparams, filters, tokens)
        for record in _tensor_records(f):
            result.tensors[record.name] = record
    return result


def _tensor_records(f: BinaryIO) -> Iterator[TensorRecord]:
    while head := f.read(12):
        n_dims, name_len, ggml_type = struct.unpack("<3i", head)
        dims = struct.unpack(f"<{n_dims}i", f.read(4 * n_dims))
        name = f.read(name_len).decode()
        size = n_bytes(dims, ggml_type)
        record = TensorRecord(name, tuple(dims), ggml_type, f.tell(), size)
        f.seek(size, 1)
        yield record
