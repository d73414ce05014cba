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


def cues(transcript: Transcript, max_words_per_line: int | None = None) -> list[tuple[float, float, str]]:
    """Subtitle cues: one per segment, or, with `max_words_per_line` and word timestamps,
    runs of at most that many words of a segment, timed by their first and last word."""
    out = []
    for seg in transcript.segments:
        if max_words_per_line and seg.words:
            for i in range(0, len(seg.words), max_words_per_line):
                run = seg.words[i : i + max_words_per_line]
                out.append((run[0].start, run[-1].end, "".join(w.word for w in run).strip()))
        else:
            out.append((seg.start, seg.end, seg.text.strip()))
    return out


def to_srt(transcript: Transcript, max_words_per_line: int | None = None) -> str:
    blocks = []
    for i, (start, end, text) in enumerate(cues(transcript, max_words_per_line), start=1):
        blocks.append(f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, max_words_per_line: int | None = None) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text in cues(transcript, max_words_per_line):
        blocks.append(f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_json(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "json": to_json,
}


def render(transcript: Transcript, fmt: str, max_words_per_line: int | None = None) -> str:
    """`max_words_per_line` cuts srt/vtt cues by words (needs word timestamps; others ignore it)."""
    if fmt in ("srt", "vtt"):
        return SUBTITLE_WRITERS[fmt](transcript, max_words_per_line)
    return WRITERS[fmt](transcript)


SUBTITLE_WRITERS = {"srt": to_srt, "vtt": to_vtt}
