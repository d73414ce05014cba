import json

from dwkit.results import Segment, Transcript
from dwkit.writers import render


def _transcript() -> Transcript:
    return Transcript(
        text=" Hello there. General Kenobi.",
        language="en",
        duration=3725.5,
        segments=[Segment(0.0, 1.5, " Hello there."), Segment(3661.25, 3662.0, " General Kenobi.")],
    )


def test_srt_numbers_blocks_and_uses_commas():
    out = render(_transcript(), "srt")
    assert out.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n")
    assert "2\n01:01:01,250 --> 01:01:02,000\nGeneral Kenobi.\n" in out


def test_vtt_has_header_and_dots():
    out = render(_transcript(), "vtt")
    assert out.startswith("WEBVTT\n")
    assert "01:01:01.250 --> 01:01:02.000\nGeneral Kenobi." in out


def test_json_holds_segments_and_txt_the_text():
    data = json.loads(render(_transcript(), "json"))
    assert data["language"] == "en" and data["duration"] == 3725.5
    assert data["segments"][1]["start"] == 3661.25
    assert render(_transcript(), "txt") == "Hello there. General Kenobi.\n"
