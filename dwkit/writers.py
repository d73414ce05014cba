"""Writers for txt, srt, vtt and json; one function per format, chosen by name."""

from __future__ import annotations

import json
from collections.abc import Callable

from dwkit.results import Transcript

FORMATS = ("txt", "srt", "vtt", "json")


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_txt(transcript: Transcript) -> str:
    return transcript.text.strip() + "\n"


def to_srt(transcript: Transcript) -> str:
    blocks = []
    for i, seg in enumerate(transcript.segments, start=1):
        times = f"{_clock(seg.start, ',')} --> {_clock(seg.end, ',')}"
        blocks.append(f"{i}\n{times}\n{seg.text.strip()}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for seg in transcript.segments:
        blocks.append(f"{_clock(seg.start, '.')} --> {_clock(seg.end, '.')}\n{seg.text.strip()}\n")
    return "\n".join(blocks)


def to_json(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "json": to_json,
}


def render(transcript: Transcript, fmt: str) -> str:
    return WRITERS[fmt](transcript)
