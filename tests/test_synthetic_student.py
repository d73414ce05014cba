"""The large-v3 preset and distil-whisper-style students (teacher's encoder, first + last decoder layers)."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from dwkit.errors import ConfigError
from dwkit.model_info import ModelInfo
from dwkit.synthetic import PRESETS, make_student, preset_dims


def test_large_v3_preset_is_distil_large_v3_5_with_32_decoder_layers():
    large, distil = preset_dims("large-v3"), PRESETS["distil-large-v3.5"]
    assert (large.encoder_layers, large.decoder_layers, large.d_model, large.n_mels) == (32, 32, 1280, 128)
    assert (large.vocab_size, large.encoder_heads, large.decoder_ffn_dim) == (51866, 20, 5120)
    assert large.encoder_layers == distil.encoder_layers and distil.decoder_layers == 2


def test_student_keeps_the_encoder_and_the_first_and_last_decoder_layers(random_tiny80_dir, tmp_path):
    student = make_student(random_tiny80_dir, tmp_path / "student")
    teacher_w = load_file(str(random_tiny80_dir / "model.safetensors"))
    student_w = load_file(str(student / "model.safetensors"))
    encoder = [n for n in teacher_w if n.startswith("model.encoder.")]
    assert encoder and all(np.array_equal(teacher_w[n], student_w[n]) for n in encoder)
    for new, old in ((0, 0), (1, 3)):
        name = f"model.decoder.layers.{new}.fc1.weight"
        assert np.array_equal(student_w[name], teacher_w[f"model.decoder.layers.{old}.fc1.weight"])
    assert not any(n.startswith("model.decoder.layers.2.") for n in student_w)
    assert json.loads((student / "config.json").read_text())["decoder_layers"] == 2
    assert ModelInfo.from_model_dir(student).decoder_layers == 2
    assert (student / "tokenizer.json").read_bytes() == (random_tiny80_dir / "tokenizer.json").read_bytes()
    with pytest.raises(ConfigError, match="distinct layers"):
        make_student(random_tiny80_dir, tmp_path / "bad", keep=(0, 4))  # 4 % 4 == 0: the same layer
