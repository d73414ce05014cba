import json
import os
import stat

import pytest

from dwkit.cli.common import write_atomic
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


# --- output files: modes (issue 19, item 3) ----------------------------------------------------


@pytest.fixture
def umask():
    """Set a umask for the test, restoring the process's own afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=oct)
def test_a_new_output_file_honours_the_umask(tmp_path, umask, mask, mode):
    """mkstemp made every transcript 0600, whatever the umask."""
    umask(mask)
    write_atomic(tmp_path / "a.txt", "hello\n")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert (tmp_path / "a.txt").read_text() == "hello\n"


@pytest.mark.parametrize("mode", [0o600, 0o664, 0o640], ids=oct)
def test_a_replaced_output_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o022)
    target = tmp_path / "a.srt"
    target.write_text("old\n")
    target.chmod(mode)
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srt"]  # no temporary file left
