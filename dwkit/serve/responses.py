"""A transcript in OpenAI's response formats, and the server-sent events of a stream.

text, srt and vtt are dwkit's own writers (the same bytes `dwkit transcribe -f txt|srt|vtt`
writes); json and verbose_json are OpenAI's objects (`Transcription`, `TranscriptionVerbose`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from dwkit.results import Segment, Transcript
from dwkit.tokenizer import LANGUAGES
from dwkit.writers import render

# OpenAI's response_format -> (dwkit writer, media type) for the plain-text formats
_TEXT_FORMATS = {
    "text": ("txt", "text/plain"),
    "srt": ("srt", "application/x-subrip"),
    "vtt": ("vtt", "text/vtt"),
}
FRAMES_PER_SECOND = 100  # log-mel frames (10 ms hops): the unit of whisper's `seek`


def transcript_response(transcript: Transcript, response_format: str, task: str) -> Response:
    if response_format == "json":
        return JSONResponse({"text": transcript.text.strip()})
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(transcript, task))
    writer, media_type = _TEXT_FORMATS[response_format]
    return PlainTextResponse(render(transcript, writer), media_type=media_type)


def verbose_json(transcript: Transcript, task: str) -> dict[str, Any]:
    """OpenAI's verbose_json: the language by name ("english"), segments with their scores, and
    with word timestamps OpenAI's top-level `words` (word, start, end; plus dwkit's probability)."""
    language = transcript.language or "en"
    answer: dict[str, Any] = {
        "task": task,
        "language": LANGUAGES.get(language, language),
        "duration": transcript.duration,
        "text": transcript.text.strip(),
        "segments": [segment_json(i, s) for i, s in enumerate(transcript.segments)],
        "usage": {"type": "duration", "seconds": transcript.duration},
    }
    if any(s.words is not None for s in transcript.segments):
        answer["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end, "probability": w.probability}
            for s in transcript.segments
            for w in s.words or []
        ]
    return answer


def segment_json(index: int, segment: Segment) -> dict[str, Any]:
    """One segment as OpenAI's `TranscriptionSegment`. dwkit does not keep the window offset
    each segment was decoded from, so `seek` is the segment's own start in mel frames."""
    return {
        "id": index,
        "seek": round(segment.start * FRAMES_PER_SECOND),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def sse(data: dict[str, Any]) -> str:
    """One server-sent event as OpenAI's streaming endpoints send it (a `data:` line)."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def delta_event(index: int, segment: Segment) -> str:
    """`transcript.text.delta` for one finished segment (with its times, which OpenAI's
    event lacks but clients of a segment-level stream want)."""
    return sse(
        {
            "type": "transcript.text.delta",
            "delta": segment.text,
            "segment": {"id": index, "start": segment.start, "end": segment.end},
        }
    )


def done_event(transcript: Transcript) -> str:
    return sse({"type": "transcript.text.done", "text": transcript.text.strip()})
