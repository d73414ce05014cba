"""Servers for the serve tests: real uvicorn on free loopback ports, the real tiny.en.

The model is loaded once per session and shared by every server (each has its own batcher
thread; the Transcriber serialises their calls on the backend). The reference transcripts
come from `dwkit transcribe --config` on the same config file the servers use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="dwkit serve needs the serve extra: pip install 'dwkit[serve]'")
openai = pytest.importorskip("openai", reason="the serve tests use the openai client: pip install openai")

MODEL_NAME = "tiny.en"
# Single-sentence clips (~3-4 s each) for the concurrency tests.
CLIP_SENTENCES = (0, 3, 4, 6)


def write_config(path: Path, model_dir: Path, mode: str = "sequential", **serve: Any) -> Path:
    """A config file for the bundled tiny.en on the hf backend, with `[serve]` keys."""
    lines = [f'model = "{model_dir}"', 'backend = "hf"', f'mode = "{mode}"', "[serve]"]
    lines.append(f'model_name = "{MODEL_NAME}"')
    lines += [
        f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
        for key, value in serve.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def serve_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def config_file(serve_dir: Path, tiny_en_dir: Path) -> Path:
    return write_config(serve_dir / "serve.toml", tiny_en_dir)


@pytest.fixture(scope="session")
def transcriber(config_file: Path):  # type: ignore[no-untyped-def]
    from dwkit.api import load

    return load(config_file)


@pytest.fixture(scope="session")
def start_server(transcriber, serve_dir: Path, tiny_en_dir: Path):  # type: ignore[no-untyped-def]
    """`start_server(mode=..., environ=..., **serve_keys)`: a context manager yielding a base URL."""
    from dwkit.config import Config
    from dwkit.serve.app import create_app
    from dwkit.serve.background import serving

    count = iter(range(1000))

    @contextlib.contextmanager
    def start(mode: str = "sequential", environ: dict[str, str] | None = None, **serve: Any) -> Iterator[str]:
        path = write_config(serve_dir / f"server-{next(count)}.toml", tiny_en_dir, mode, **serve)
        app = create_app(Config.from_file(path, env={}), transcriber, environ or {})
        with serving(app) as url:
            yield url

    return start


@pytest.fixture(scope="session")
def server(start_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The default server: sequential mode, default limits, no API key."""
    with start_server() as url:
        yield url


def make_client(url: str, api_key: str = "unused", **options: Any):  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, **options)


@pytest.fixture(scope="session")
def client(server: str):  # type: ignore[no-untyped-def]
    return make_client(server)


@pytest.fixture(scope="session")
def clips(dwkit_cache: Path) -> list[Path]:
    from dwkit.speech import SENTENCES, cached_speech, espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return [cached_speech([SENTENCES[i]], dwkit_cache / "speech") for i in CLIP_SENTENCES]


@pytest.fixture(scope="session")
def reference(config_file: Path, serve_dir: Path) -> Callable[..., Any]:
    """`reference(audio, fmt, *flags)`: what `dwkit transcribe --config` writes for `audio`, a
    path (its text) or a list of paths (their texts, from one run over all of them); cached."""
    from dwkit.cli.main import main

    outputs: dict[tuple[Any, ...], str] = {}
    runs = iter(range(1000))

    def run(audio: Path | list[Path], fmt: str = "txt", *flags: str) -> Any:
        audios = audio if isinstance(audio, list) else [audio]
        missing = [a for a in audios if (str(a), fmt, flags) not in outputs]
        if missing:
            out_dir = serve_dir / f"reference-{next(runs)}"
            out_dir.mkdir()
            args = ["transcribe", "--config", str(config_file), *map(str, missing), "-f", fmt, *flags]
            assert main([*args, "-o", str(out_dir)]) == 0
            for a in missing:
                outputs[(str(a), fmt, flags)] = (out_dir / f"{a.stem}.{fmt}").read_text(encoding="utf-8")
        texts = [outputs[(str(a), fmt, flags)] for a in audios]
        return texts if isinstance(audio, list) else texts[0]

    return run


def metric(url: str, name: str, **labels: str) -> float:
    """A sample's value on the server's /metrics page (0 when absent)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics") as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 120) -> None:
    """Poll until `condition()` holds (a state to reach, not a speed: the limit only stops a hang)."""
    import time

    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def raw_upload(url: str, audio: bytes, **fields: str):  # type: ignore[no-untyped-def]
    """A socket that has sent a transcription request's head and `multipart` body bytes; the
    caller sends the rest (or not) and closes it, as a client that goes away would."""
    import socket
    from urllib.parse import urlparse

    boundary = "dwkit-test-boundary"
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    body = head.encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    address = urlparse(url)
    sock = socket.create_connection((address.hostname, address.port))
    request = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return sock, request.encode() + body
