"""Whisper's fixed numbers, named once (as openai/whisper's audio.py names them).

Every model of the family shares them: 16 kHz audio, a 25 ms STFT window every 10 ms, 30 s
windows of 3000 mel frames, an encoder that halves the frame rate (1500 positions), and
timestamp tokens every 20 ms. Importing this module costs nothing (no numpy).
"""

SAMPLE_RATE = 16000  # Hz
N_FFT = 400  # STFT window, samples (25 ms)
HOP_LENGTH = 160  # STFT hop, samples (10 ms): one mel frame
CHUNK_LENGTH = 30  # seconds of audio per window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
FRAME_SECONDS = 0.01  # HOP_LENGTH / SAMPLE_RATE: seconds per mel frame
INPUT_STRIDE = 2  # mel frames per encoder position (conv2 stride): one timestamp step = 2 frames
N_AUDIO_CTX = N_FRAMES // INPUT_STRIDE  # 1500 encoder positions per 30 s window
TIME_PRECISION = 0.02  # INPUT_STRIDE * FRAME_SECONDS: seconds per timestamp token
