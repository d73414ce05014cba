"""Regenerate the bundled demo clip: dwkit/data/demo.flac and its transcript demo.txt.

The clip is ~15 s of espeak-ng speech (mono, 16 kHz, 16-bit FLAC, well under 300 KB), made
by `dwkit.speech.synthesize` so the demo needs no download. Run from the repository root:

    python scripts/make_demo_audio.py
"""

from __future__ import annotations

import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from dwkit.speech import SAMPLE_RATE, synthesize

# Plain words both real bundled models (tiny.en, base) transcribe exactly.
DEMO_SENTENCES = (
    "Welcome to this short demonstration of speech recognition.",
    "The same model can run on several different engines.",
    "Each of them should write down the words you are reading right now.",
    "Thank you for listening, and have a good day.",
)
DATA_DIR = Path(__file__).resolve().parent.parent / "dwkit" / "data"
MAX_BYTES = 300_000


def write_flac(samples: np.ndarray, path: Path) -> None:
    """Encode mono int16 samples at 16 kHz as FLAC with PyAV."""
    import av

    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        stream.format = "s16"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = synthesize(list(DEMO_SENTENCES), Path(tmp) / "demo.wav")
        with wave.open(str(wav_path), "rb") as handle:
            samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    flac_path = DATA_DIR / "demo.flac"
    write_flac(samples, flac_path)
    (DATA_DIR / "demo.txt").write_text(" ".join(DEMO_SENTENCES) + "\n")
    size = flac_path.stat().st_size
    print(f"{flac_path}: {len(samples) / SAMPLE_RATE:.1f} s, {size} bytes")
    if size > MAX_BYTES:
        print(f"error: {flac_path} is over {MAX_BYTES} bytes; shorten DEMO_SENTENCES", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
