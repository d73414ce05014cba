"""No segment ends after the audio does, in either mode (srt/vtt inherit the segment times)."""

from __future__ import annotations

import numpy as np
import pytest

from dwkit.decoding.options import Hypothesis
from dwkit.longform.options import LongformOptions
from dwkit.model_info import ModelInfo
from dwkit.runtimes.base import EncoderOutput
from dwkit.tokenizer import Tokenizer
from dwkit.transcriber import Transcriber
from dwkit.writers import render

DURATION_S = 5.0


class LateTimestampBackend:
    """Hears speech in every window and closes it with a timestamp at 8 s, past a 5 s
    recording's end: what a real model does on the zero-padded tail of the last window."""

    name = "late"

    def __init__(self, info: ModelInfo, text_tokens: list[int]):
        self.info, self.text_tokens = info, text_tokens

    def encode(self, mel):
        return EncoderOutput(None, mel.shape[0])

    def select(self, enc, rows):
        return EncoderOutput(None, len(rows))

    def generate(self, enc, prompts, opts):
        begin = self.info.timestamp_begin
        tokens = [begin, *self.text_tokens, begin + int(8.0 / 0.02)]
        return [Hypothesis(tokens, -0.1 * len(tokens), -0.1, 0.01, opts.temperature) for _ in prompts]

    def detect_language(self, enc):
        return [{"en": 1.0}] * enc.batch_size


@pytest.mark.parametrize("mode", ["sequential", "chunked"])
def test_segment_and_subtitle_times_stay_inside_the_audio(tiny_en_dir, mode):
    info = ModelInfo.from_model_dir(tiny_en_dir)
    tokenizer = Tokenizer.from_model_dir(tiny_en_dir, info)
    backend = LateTimestampBackend(info, tokenizer.encode(" Hello there."))
    transcriber = Transcriber(backend, tokenizer, LongformOptions(mode=mode))  # type: ignore[arg-type]
    samples = np.zeros(int(DURATION_S * 16000), dtype=np.float32)
    transcript = transcriber.transcribe(samples)
    assert transcript.duration == pytest.approx(DURATION_S)
    assert transcript.segments and "Hello there" in transcript.text
    assert all(s.start <= s.end <= transcript.duration for s in transcript.segments)
    assert transcript.segments[-1].end == pytest.approx(DURATION_S)
    assert "00:00:05,000" in render(transcript, "srt") and "00:00:08" not in render(transcript, "srt")
    assert "00:00:05.000" in render(transcript, "vtt")
