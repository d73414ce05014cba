"""Import a whisper.cpp model file (`ggml-*.bin`) as a transformers checkpoint.

For users who hold only a whisper.cpp file: `dwconvert --from ggml --to hf FILE OUT`. The
file is parsed by `ggml_format.read_ggml`, its tensors renamed back by inverting the name
table dwkit's ggml export uses (`ggml_format.NAME_MAP`), and `hf_files.write_hf_checkpoint`
writes the checkpoint with the tokenizer rebuilt from the file's own vocabulary
(`dwkit.foreign.whisper_cpp_tokenizer`).

Precision: f32 and f16 tensors are exact in float32 (an f32 file round-trips bit for bit).
Quantised files (q8_0, q5_0, q4_0) are dequantised with the `gguf` package's own
`gguf.quants.dequantize` (ggml's block formats, pure numpy): the checkpoint then holds what
whisper.cpp computes with, not the weights it was quantised from, and the manifest says so.
whisper.cpp files carry no alignment heads, so the checkpoint lists CTranslate2's default
(every head of the decoder's second half), as for any source without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dwkit.converters.base import ConversionResult
from dwkit.converters.ggml_format import GGML_TYPES, NAME_MAP, GgmlFile, _compile, read_ggml
from dwkit.converters.hf_files import write_imported_checkpoint
from dwkit.errors import BackendUnavailable, ConversionError, ModelError

# whisper.cpp name -> transformers name (the export's table, read backwards).
_INVERSE = [(_compile(dst), src) for src, dst in NAME_MAP]
CONV_BIASES = ("encoder.conv1.bias", "encoder.conv2.bias")
REQUIRED = (
    "model.encoder.conv1.weight",
    "model.encoder.conv2.weight",
    "model.encoder.embed_positions.weight",
    "model.encoder.layer_norm.weight",
    "model.decoder.embed_tokens.weight",
    "model.decoder.embed_positions.weight",
    "model.decoder.layer_norm.weight",
)
QUANTISED = {name: type_id for name, type_id in GGML_TYPES.items() if name.startswith("q")}


def hf_name(name: str) -> str:
    """transformers' name for a whisper.cpp tensor."""
    for regex, template in _INVERSE:
        match = regex.match(name)
        if match:
            return template.format(**match.groupdict()) + name[match.end() :]
    raise KeyError(name)


def ggml_to_hf_state_dict(path: Path, parsed: GgmlFile) -> tuple[dict[str, np.ndarray], list[str]]:
    """float32 transformers tensors of a whisper.cpp file, and the quantised types it held."""
    state: dict[str, np.ndarray] = {}
    quantised: set[str] = set()
    for name, record in parsed.tensors.items():
        try:
            target = hf_name(name)
        except KeyError:
            raise ConversionError(f"{path}: unexpected tensor {name!r}; not a Whisper model") from None
        data = parsed.array(path, name)
        if record.ggml_type in QUANTISED.values():
            quantised.add(record.type_name)
            data = _dequantise(path, name, data, record.ggml_type, record.shape)
        data = np.asarray(data, dtype=np.float32)
        state[target] = data.reshape(-1) if name in CONV_BIASES else data
    missing = [name for name in REQUIRED if name not in state]
    if missing:
        raise ConversionError(f"{path}: lacks {', '.join(missing)}; an incomplete whisper.cpp file")
    return state, sorted(quantised)


def _dequantise(path: Path, name: str, raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    try:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError as exc:
        raise BackendUnavailable(
            f"{path}: {name} is quantised; dequantising it needs the gguf package: pip install 'dwkit[ggml]'"
        ) from exc
    rows = raw.reshape(shape[0], -1)
    return dequantize(rows, GGMLQuantizationType(ggml_type)).reshape(shape)


def import_ggml(
    source: Path,
    out_dir: Path,
    *,
    overwrite: bool = False,
) -> ConversionResult:
    """Write a complete transformers checkpoint for the whisper.cpp file `source` (or the one
    a directory holds). The output appears at `out_dir` only when complete."""
    from dwkit import foreign

    source = Path(source)
    try:
        path = foreign.ggml_file(source)
    except ModelError as exc:
        raise ConversionError(str(exc)) from exc
    if path is None:
        raise ConversionError(
            f"{source}: not a whisper.cpp model file (ggml-*.bin), nor a directory holding one"
        )
    try:
        dims, tokenizer = foreign.ggml_parts(path)
        parsed = read_ggml(path)
    except (ModelError, ValueError) as exc:
        raise ConversionError(str(exc)) from exc
    state_dict, quantised = ggml_to_hf_state_dict(path, parsed)
    precision = foreign.stored_precision(path)
    recorded: dict[str, Any] = {"kind": "ggml", "path": str(path.resolve()), "precision": precision}
    if quantised:
        recorded["dequantised"] = quantised
    return write_imported_checkpoint(
        out_dir,
        state_dict,
        dims,
        tokenizer,
        overwrite=overwrite,
        manifest={"source": recorded, "tool": "dwkit.converters.ggml_import"},
    )
