"""An independent writer of whisper.cpp model files, for the tests.

It follows whisper.cpp's own `models/convert-h5-to-ggml.py` (a transformers checkpoint ->
ggml-model.bin) step by step, and shares no code with dwkit's `converters/ggml.py`, so a file
dwkit reads correctly here is one whisper.cpp users could have made themselves.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# convert-h5-to-ggml.py's `conv_map`: transformers module names -> whisper.cpp's.
CONV_MAP = {
    "self_attn.k_proj": "attn.key",
    "self_attn.q_proj": "attn.query",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.layer_norm.bias": "decoder.ln.bias",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "encoder_attn.k_proj": "cross_attn.key",
}


def _bytes_to_unicode() -> dict[int, str]:
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _ggml_name(name: str) -> str | None:
    if name == "proj_out.weight":
        return None
    name = name.removeprefix("model.")
    parts = name.split(".")
    if parts[1] == "layers":  # encoder.layers.3.fc1.weight -> encoder.blocks.3.mlp.0.weight
        module = ".".join(parts[3:-1])
        return ".".join([parts[0], "blocks", parts[2], CONV_MAP[module], parts[-1]])
    return CONV_MAP.get(name, name)


# whisper.cpp's quantize tool (examples/common-ggml.cpp): header ftype ids + 1000 * GGML_QNT_VERSION,
# per-tensor ggml_type ids, and the 2-D tensors it leaves in float.
QUANTISED = {"q8_0": (7, 8), "q5_0": (8, 6), "q4_0": (2, 2)}
QNT_VERSION = 2
FLOAT32 = (
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
)


def write_ggml(hf_dir: Path, out: Path, use_f16: bool = True, quantise: str | None = None) -> Path:
    """hf_dir (config.json, vocab.json, model.safetensors) -> a whisper.cpp model file.

    `quantise` ("q8_0", "q5_0", "q4_0") then quantises the 2-D weights as whisper.cpp's
    `quantize` tool does, with ggml's block formats from the gguf package (ggml's own Python)."""
    from safetensors.numpy import load_file
    from transformers import WhisperFeatureExtractor

    hparams = json.loads((hf_dir / "config.json").read_text())
    tokens = json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8"))
    filters = WhisperFeatureExtractor(feature_size=hparams["num_mel_bins"]).mel_filters.T.astype(np.float32)
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
    weights = load_file(str(hf_dir / "model.safetensors"))
    with open(out, "wb") as fout:
        fout.write(struct.pack("i", 0x67676D6C))
        for key in (
            "vocab_size",
            "max_source_positions",
            "d_model",
            "encoder_attention_heads",
            "encoder_layers",
            "max_target_positions",
            "d_model",
            "decoder_attention_heads",
            "decoder_layers",
            "num_mel_bins",
        ):
            fout.write(struct.pack("i", hparams[key]))
        ftype = QUANTISED[quantise][0] + 1000 * QNT_VERSION if quantise else int(use_f16)
        fout.write(struct.pack("i", ftype))
        fout.write(struct.pack("i", filters.shape[0]))
        fout.write(struct.pack("i", filters.shape[1]))
        fout.write(filters.tobytes())
        fout.write(struct.pack("i", len(tokens)))
        for key, _ in sorted(tokens.items(), key=lambda x: x[1]):
            text = bytearray([byte_decoder[c] for c in key])
            fout.write(struct.pack("i", len(text)))
            fout.write(text)
        for name, data in weights.items():
            renamed = _ggml_name(name)
            if renamed is None:
                continue
            if renamed in ("encoder.conv1.bias", "encoder.conv2.bias"):
                data = data.reshape(data.shape[0], 1)
            n_dims = len(data.shape)
            shape = data.shape
            if quantise and n_dims == 2 and renamed not in FLOAT32:
                from gguf import GGMLQuantizationType
                from gguf.quants import quantize

                ftype = QUANTISED[quantise][1]
                data = quantize(data.astype(np.float32), GGMLQuantizationType(ftype))
            elif (use_f16 or quantise) and n_dims >= 2 and renamed not in FLOAT32:
                data, ftype = data.astype(np.float16), 1
            else:
                data, ftype = data.astype(np.float32), 0
            raw = renamed.encode("utf-8")
            fout.write(struct.pack("iii", n_dims, len(raw), ftype))
            for i in range(n_dims):
                fout.write(struct.pack("i", shape[n_dims - 1 - i]))
            fout.write(raw)
            fout.write(np.ascontiguousarray(data).tobytes())
    return out
