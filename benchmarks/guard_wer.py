"""What the lost-speech guard buys and costs: WER against the spoken text, guard on and off.

    python benchmarks/guard_wer.py --model tiny.en [--model base] > benchmarks/results/guard_wer.md

For each recording (the espeak-ng long-form audio of tests/conftest.py's speech_long, 153 s;
the bundled demo, 15 s; the early end-of-text, skipped-start and silent-gaps recordings of
tests/longform/speech_cases.py, 18 s, 24.5 s and 107 s) and each
mode, it transcribes with the guard (the default) and with `exact_transformers` (transformers'
own output), plus chunked without timestamps (the pipeline's text the guard must not fall
below) and each mode with --vad (guard on), on the hf backend with the default long-form
options. WER is after Whisper's English normaliser (dwkit.metrics). The cost is given as
windows encoded (load-independent) and wall seconds (one run each: on a shared machine read
them as rough). "words in silence" counts the words of segments that lie wholly inside a
silent gap (silent_gaps only: its sentences' places are known).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.longform.speech_cases: the fixture's recording

import numpy as np  # noqa: E402

from dwkit.audio import load_audio  # noqa: E402
from dwkit.bundled import bundled_model  # noqa: E402
from dwkit.constants import SAMPLE_RATE  # noqa: E402
from dwkit.longform.options import LongformOptions  # noqa: E402
from dwkit.metrics import wer  # noqa: E402
from dwkit.results import Transcript  # noqa: E402
from dwkit.speech import SENTENCES, cached_speech  # noqa: E402
from dwkit.transcriber import Transcriber  # noqa: E402
from tests.longform.speech_cases import (  # noqa: E402
    SILENT_GAP_S,
    early_end_speech,
    silent_gaps_speech,
    skipped_start_speech,
)

SETTINGS = {  # label -> (mode, LongformOptions overrides)
    "sequential, guard": ("sequential", {}),
    "sequential, exact": ("sequential", {"exact_transformers": True}),
    "chunked, guard": ("chunked", {}),
    "chunked, exact": ("chunked", {"exact_transformers": True}),
    "chunked, no timestamps": ("chunked", {"return_timestamps": False, "exact_transformers": True}),
    "sequential, vad": ("sequential", {"vad": True}),
    "chunked, vad": ("chunked", {"vad": True}),
}


@dataclass
class Row:
    audio: str
    setting: str
    wer: float
    windows: int
    seconds: float
    in_silence: int | None


def recordings(cache: Path) -> dict[str, tuple[np.ndarray, str]]:
    early, early_sentences = early_end_speech(cache / "speech")
    skipped, skipped_sentences = skipped_start_speech(cache / "speech")
    demo = REPO / "dwkit" / "data"
    gaps, gap_sentences = silent_gaps_speech(cache / "speech")
    long_form = load_audio(cached_speech(list(SENTENCES), cache / "speech"))
    return {
        "speech_long": (long_form, " ".join(SENTENCES)),
        "demo": (load_audio(demo / "demo.flac"), (demo / "demo.txt").read_text()),
        "early_end": (early, " ".join(early_sentences)),
        "skipped_start": (skipped, " ".join(skipped_sentences)),
        "silent_gaps": (gaps, " ".join(gap_sentences)),
    }


def measure(
    model_dir: Path, audios: dict[str, tuple[np.ndarray, str]], language: str | None, settings: list[str]
) -> list[Row]:
    rows = []
    for setting in settings:
        mode, overrides = SETTINGS[setting]
        opts = LongformOptions(mode=mode, language=language, **overrides)
        transcriber = Transcriber.from_model_dir(model_dir, "hf", options=opts)
        windows = _count_windows(transcriber)
        for name, (samples, spoken) in audios.items():
            windows.clear()
            started = time.perf_counter()
            transcript = transcriber.transcribe(samples)
            seconds = time.perf_counter() - started
            silent = _words_in_silence(transcript, samples) if name == "silent_gaps" else None
            rows.append(Row(name, setting, wer(spoken, transcript.text), sum(windows), seconds, silent))
    return rows


def _words_in_silence(transcript: Transcript, samples: np.ndarray) -> int:
    """Words of segments that lie wholly inside a silent gap (each sentence is followed by
    SILENT_GAP_S of silence; a segment that only starts early, as Whisper's window-start
    timestamps do, is not counted)."""
    gaps = [(end + 0.5, end + SILENT_GAP_S - 0.5) for end in _sentence_ends(samples)]
    return sum(
        len(s.text.split()) for s in transcript.segments if any(a <= s.start and s.end <= b for a, b in gaps)
    )


def _sentence_ends(samples: np.ndarray) -> list[float]:
    """Where each sentence of the silent-gaps recording ends: the last loud sample before a gap."""
    loud = np.flatnonzero(np.abs(samples) > 1e-4) / SAMPLE_RATE
    breaks = np.flatnonzero(np.diff(loud) > SILENT_GAP_S / 2)
    return [float(loud[i]) for i in breaks] + [float(loud[-1])]


def _count_windows(transcriber: Transcriber) -> list[int]:
    """Rows of every encoder call (windows and chunks encoded), appended as they happen."""
    counts: list[int] = []
    encode = transcriber.backend.encode

    def counting(mel):  # type: ignore[no-untyped-def]
        counts.append(len(mel))
        return encode(mel)

    transcriber.backend.encode = counting  # type: ignore[method-assign]
    return counts


def table(model: str, rows: list[Row]) -> str:
    lines = [
        f"### {model} (hf fp32, default long-form options, {platform.processor() or platform.machine()})",
        "",
        "| audio | setting | WER | windows encoded | seconds | words in silence |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.audio} | {r.setting} | {r.wer:.3f} | {r.windows} | {r.seconds:.1f} | "
        f"{'' if r.in_silence is None else r.in_silence} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="bundled model name (default: tiny.en)")
    parser.add_argument("--audio", action="append", help="only these recordings (default: all)")
    parser.add_argument(
        "--setting", action="append", choices=list(SETTINGS), help="only these (default: all)"
    )
    args = parser.parse_args()
    cache = Path(os.environ.get("DWKIT_CACHE", REPO / ".cache" / "dwkit"))
    audios = {k: v for k, v in recordings(cache).items() if not args.audio or k in args.audio}
    for model in args.model or ["tiny.en"]:
        language = None if model.endswith(".en") else "en"
        rows = measure(bundled_model(model, cache), audios, language, args.setting or list(SETTINGS))
        print(table(model, rows), flush=True)


if __name__ == "__main__":
    main()
