"""Models, health, readiness, metrics, and `dwkit serve` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from tests.serve.conftest import MODEL_NAME, make_client, metric, wait_for


def _get(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    with urllib.request.urlopen(url) as response:
        return response.status, json.loads(response.read())


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).owned_by == "dwkit"


def test_health_and_ready(server):
    assert _get(f"{server}/health") == (200, {"status": "ok"})
    assert _get(f"{server}/ready") == (200, {"status": "ready", "model": MODEL_NAME})


def test_metrics_count_requests_errors_audio_and_latency(start_server, speech_short):
    audio = speech_short[0]
    with start_server() as url:
        client = make_client(url)
        with audio.open("rb") as f:
            client.audio.transcriptions.create(file=f, model=MODEL_NAME)
        try:
            client.audio.transcriptions.create(file=audio.open("rb"), model="nope")
        except Exception:
            pass
        values = {
            "ok": metric(url, "dwkit_serve_requests_total", endpoint="transcribe", status="200"),
            "bad": metric(url, "dwkit_serve_requests_total", endpoint="transcribe", status="400"),
            "error": metric(url, "dwkit_serve_errors_total", endpoint="transcribe", code="model_not_found"),
            "latency": metric(url, "dwkit_serve_request_duration_seconds_count", endpoint="transcribe"),
            "audio": metric(url, "dwkit_serve_audio_seconds_total"),
            "queue": metric(url, "dwkit_serve_queue_depth"),
            "in_flight": metric(url, "dwkit_serve_in_flight_requests"),
        }
    assert values["audio"] > 7  # speech_short is ~7.6 s
    del values["audio"]
    assert values == {"ok": 1, "bad": 1, "error": 1, "latency": 2, "queue": 0, "in_flight": 0}


def test_dwkit_serve_command_serves_the_config(config_file, speech_short, reference):
    from dwkit.serve.background import free_port

    port = free_port()
    env = {**os.environ, "DWKIT_SERVE__MODEL_NAME": "from-env"}  # the environment overrides the file
    command = [
        sys.executable,
        "-m",
        "dwkit.cli.main",
        "serve",
        "--config",
        str(config_file),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return _get(f"{url}/ready")[0] == 200
            except OSError:
                return False

        wait_for(ready, "dwkit serve answers /ready")
        with speech_short[0].open("rb") as f:
            answer = make_client(url).audio.transcriptions.create(
                file=f, model="from-env", response_format="srt"
            )
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert answer == reference(speech_short[0], "srt")
