"""transformers' own outputs, the reference our long-form engine must reproduce."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dwkit.longform.options import LongformOptions


@dataclass
class ReferenceSegment:
    start: float
    end: float
    tokens: list[int]


@lru_cache(maxsize=4)
def _model(model_dir: str):  # type: ignore[no-untyped-def]
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    return processor, model


def generate_longform(
    model_dir: Path, audio: np.ndarray, opts: LongformOptions
) -> tuple[str, list[ReferenceSegment]]:
    """transformers' long-form `generate(return_timestamps=True)` with the same settings
    (an initial prompt as `prompt_ids`, from the processor's `get_prompt_ids`)."""
    processor, model = _model(str(model_dir))
    features = processor(
        audio,
        sampling_rate=16000,
        return_tensors="pt",
        truncation=False,
        padding="longest",
        return_attention_mask=True,
    )
    if features.input_features.shape[-1] < 3000:  # short-form: the processor's usual 30 s padding
        features = processor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    kwargs = {}
    if opts.language is not None:
        kwargs["language"] = opts.language
    if model.generation_config.is_multilingual:
        kwargs["task"] = opts.task
    if opts.initial_prompt is not None:
        kwargs["prompt_ids"] = processor.get_prompt_ids(opts.initial_prompt, return_tensors="pt")
    out = model.generate(
        features.input_features,
        return_timestamps=True,
        return_segments=True,
        temperature=opts.temperatures if len(opts.temperatures) > 1 else opts.temperatures[0],
        compression_ratio_threshold=opts.compression_ratio_threshold,
        logprob_threshold=opts.logprob_threshold,
        no_speech_threshold=opts.no_speech_threshold,
        condition_on_prev_tokens=opts.condition_on_prev_tokens,
        **kwargs,
    )
    text = processor.batch_decode(out["sequences"], skip_special_tokens=True)[0]
    segments = [
        ReferenceSegment(float(s["start"]), float(s["end"]), s["tokens"].tolist()) for s in out["segments"][0]
    ]
    return text, segments


def pipeline_chunked(model_dir: Path, audio: np.ndarray, opts: LongformOptions) -> dict:
    """transformers' ASR pipeline with chunk_length_s / stride_length_s (greedy: num_beams=1)."""
    from transformers import pipeline

    pipe = pipeline(
        "automatic-speech-recognition",
        model=str(model_dir),
        chunk_length_s=opts.chunk_length_s,
        stride_length_s=opts.stride_length_s,
        batch_size=opts.batch_size,
    )
    generate_kwargs: dict = {"num_beams": 1}
    if len(opts.temperatures) > 1:
        generate_kwargs.update(
            temperature=opts.temperatures,
            compression_ratio_threshold=opts.compression_ratio_threshold,
            logprob_threshold=opts.logprob_threshold,
            no_speech_threshold=opts.no_speech_threshold,
        )
    if opts.language is not None:
        generate_kwargs["language"] = opts.language
    return pipe(audio.copy(), return_timestamps=opts.return_timestamps, generate_kwargs=generate_kwargs)
