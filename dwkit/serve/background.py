"""A server on a background thread: what the tests and the load benchmark start."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from dwkit.errors import DwkitError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(
    app: FastAPI, host: str = "127.0.0.1", port: int | None = None, startup_s: float = 60
) -> Iterator[str]:
    """Run `app` under uvicorn on a thread; yields its base URL once it accepts connections,
    and shuts it down (lifespan included) on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port or free_port(host), log_level="warning"))
    thread = threading.Thread(target=server.run, name="dwkit-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise DwkitError(
                f"the server did not start on {host}:{server.config.port} within {startup_s:g} s"
            )
        time.sleep(0.02)
    try:
        yield f"http://{host}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join()
