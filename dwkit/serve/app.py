"""The FastAPI application: OpenAI's audio endpoints, models, health, readiness and metrics.

Request path: authorise (optional Bearer key) -> take a slot (`serve.max_concurrent`, else
429) -> read the upload within `serve.max_request_mb` (413) -> check the fields (400) ->
decode the audio (400 if it is not audio or longer than `serve.max_audio_s`) -> queue it
for the batcher -> answer in the requested format, or 504 after `serve.request_timeout_s`.
A client that disconnects at any point gives its slot back at once, and its request leaves
the queue if its batch has not started.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from dwkit.audio import SAMPLE_RATE, load_audio
from dwkit.config import Config
from dwkit.errors import AudioError
from dwkit.results import Segment, Transcript
from dwkit.serve.batcher import Batcher, Job
from dwkit.serve.errors import ApiError
from dwkit.serve.forms import MB, AudioRequest, parse_form, read_body, read_fields, request_options
from dwkit.serve.metrics import Metrics
from dwkit.serve.responses import delta_event, done_event, sse, transcript_response
from dwkit.transcriber import Transcriber

logger = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's status for "the client went away": recorded, never sent


class _Slot:
    """One request's place among `serve.max_concurrent`; released exactly once."""

    def __init__(self, slots: _Slots) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.free(self)


class _Slots:
    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self._held: set[_Slot] = set()
        self._metrics = metrics

    def take(self) -> _Slot:
        if len(self._held) >= self.limit:
            raise ApiError(
                429,
                f"this server already has {self.limit} requests in flight (serve.max_concurrent); retry later",
                code="rate_limit_exceeded",
                type="rate_limit_error",
            )
        slot = _Slot(self)
        self._held.add(slot)
        self._metrics.in_flight.set(len(self._held))
        return slot

    def free(self, slot: _Slot) -> None:
        self._held.discard(slot)
        self._metrics.in_flight.set(len(self._held))


class Service:
    """One loaded model behind the HTTP API (the state the routes share)."""

    def __init__(self, config: Config, transcriber: Transcriber, environ: Mapping[str, str]) -> None:
        serve = config.serve
        self.config = config
        self.transcriber = transcriber
        self.options = config.to_longform_options()  # each request's starting point
        self.model_name = serve.model_name or Path(config.model or "dwkit").name
        self.api_key = environ.get(serve.api_key_env) or None
        self.created = int(time.time())
        self.metrics = Metrics(queue_depth=lambda: self.batcher.depth)
        self.batcher = Batcher(
            transcriber, serve.max_batch_size, serve.max_wait_ms / 1000, self.metrics.batch_size.observe
        )
        self.slots = _Slots(serve.max_concurrent, self.metrics)

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            raise ApiError(
                401,
                "invalid or missing API key: send it as 'Authorization: Bearer KEY' (the server reads it "
                f"from the environment variable {self.config.serve.api_key_env})",
                code="invalid_api_key",
            )

    async def answer(self, request: Request, task: str) -> Response:
        """One transcription or translation request, counted in the metrics whatever happens."""
        started = time.perf_counter()
        slot: _Slot | None = None
        streaming = False  # a stream keeps its slot until it ends
        try:
            self.authorize(request)
            slot = self.slots.take()
            response = await self._answer(request, task, slot)
            streaming = isinstance(response, StreamingResponse)
        except ApiError as exc:
            response = exc.response()
            self.metrics.errors.labels(task, exc.code or str(exc.status)).inc()
        except ClientDisconnect:
            response = Response(status_code=CLIENT_CLOSED)
            self.metrics.errors.labels(task, "client_closed").inc()
        except Exception as exc:  # a bug: the client gets a 500, the server keeps serving
            logger.exception("request failed")
            error = ApiError(500, f"internal error: {exc}", type="server_error", code="internal_error")
            response = error.response()
            self.metrics.errors.labels(task, "internal_error").inc()
        finally:
            if slot is not None and not streaming:
                slot.release()
        self.metrics.requests.labels(task, str(response.status_code)).inc()
        self.metrics.latency.labels(task).observe(time.perf_counter() - started)
        return response

    async def _answer(self, request: Request, task: str, slot: _Slot) -> Response:
        serve = self.config.serve
        body = await read_body(request, int(serve.max_request_mb * MB))
        if task == "translate" and not self.transcriber.tokenizer.info.multilingual:
            raise ApiError(
                400,
                f"model {self.model_name!r} is English-only and cannot translate; serve a multilingual "
                "model for /v1/audio/translations",
                "model",
                "translation_unsupported",
            )
        fields = await read_fields(
            await parse_form(request, body), self.transcriber.tokenizer, (self.model_name,)
        )
        options = request_options(self.options, fields, task)
        if fields.stream and options.mode != "sequential":
            raise ApiError(
                400,
                "stream: segments are streamed in sequential mode only; this server runs mode = "
                f"{options.mode!r}",
                "stream",
                "unsupported_value",
            )
        job = Job(samples=await self._samples(fields), options=options)
        if fields.stream:
            return self._stream(request, job, slot)
        transcript = await self._wait(request, job)
        self.metrics.audio_seconds.inc(transcript.duration)
        return transcript_response(transcript, fields.response_format, task)

    async def _samples(self, fields: AudioRequest) -> np.ndarray:
        try:
            samples = await asyncio.to_thread(load_audio, fields.audio)
        except AudioError as exc:
            raise ApiError(400, f"file: not readable audio ({exc})", "file", "invalid_audio") from exc
        seconds = len(samples) / SAMPLE_RATE
        if seconds > self.config.serve.max_audio_s:
            raise ApiError(
                400,
                f"file: the audio is {seconds:.1f} s long, over this server's limit of "
                f"{self.config.serve.max_audio_s:g} s (serve.max_audio_s)",
                "file",
                "audio_too_long",
            )
        return samples

    async def _wait(self, request: Request, job: Job) -> Transcript:
        """The job's transcript; a disconnect or the timeout cancels it (leaves the queue)."""
        result = asyncio.wrap_future(self.batcher.submit(job))
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            done, _ = await asyncio.wait(
                {result, gone},
                timeout=self.config.serve.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            gone.cancel()
            result.cancel()  # no-op once done
        if result in done:
            return result.result()
        if gone in done:
            raise ClientDisconnect()
        raise self._timeout()

    def _timeout(self) -> ApiError:
        return ApiError(
            504,
            f"the request took longer than {self.config.serve.request_timeout_s:g} s "
            "(serve.request_timeout_s)",
            code="timeout",
            type="server_error",
        )

    def _stream(self, request: Request, job: Job, slot: _Slot) -> StreamingResponse:
        """Server-sent events: one `transcript.text.delta` per segment as its window is decoded,
        then `transcript.text.done`. The slot is held until the stream ends or the client leaves."""
        loop = asyncio.get_running_loop()
        segments: asyncio.Queue[Segment | None] = asyncio.Queue()

        def post(item: Segment | None) -> None:  # from the batcher's thread
            try:
                loop.call_soon_threadsafe(segments.put_nowait, item)
            except RuntimeError:  # the event loop is gone (server shutting down)
                pass

        job.on_segment = post
        job.future.add_done_callback(lambda _: post(None))
        future = self.batcher.submit(job)

        async def events() -> AsyncIterator[str]:
            deadline = loop.time() + self.config.serve.request_timeout_s
            try:
                index = 0
                while (segment := await asyncio.wait_for(segments.get(), deadline - loop.time())) is not None:
                    yield delta_event(index, segment)
                    index += 1
                transcript = future.result()
                self.metrics.audio_seconds.inc(transcript.duration)
                yield done_event(transcript)
            except asyncio.TimeoutError:
                yield sse(self._timeout().body())
            except Exception as exc:  # the decode failed: tell the client in the stream
                logger.exception("streamed request failed")
                yield sse(ApiError(500, f"internal error: {exc}", type="server_error").body())
            finally:
                future.cancel()
                slot.release()

        return StreamingResponse(
            events(), media_type="text/event-stream", background=BackgroundTask(slot.release)
        )

    def models(self) -> dict[str, object]:
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, object]:
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "dwkit"}


async def _disconnected(receive: Receive) -> None:
    """Returns when the client closes the connection (the body has been read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(
    config: Config, transcriber: Transcriber | None = None, environ: Mapping[str, str] | None = None
) -> FastAPI:
    """The server for `config`; its model is loaded here, once. A `transcriber` already loaded
    for the config's model can be given instead (the tests share one between servers): the
    config's own long-form settings still apply to every request. `environ` (default
    os.environ) holds the API key variable named by `serve.api_key_env`."""
    if transcriber is None:
        from dwkit.api import load

        transcriber = load(config)
    service = Service(config, transcriber, os.environ if environ is None else environ)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.batcher.stop)

    app = FastAPI(title="dwkit", summary="OpenAI-compatible speech-to-text", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:  # unknown path, wrong method
        return ApiError(exc.status_code, str(exc.detail), code=str(exc.status_code)).response()

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await service.answer(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await service.answer(request, "translate")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            service.authorize(request)
        except ApiError as exc:
            return exc.response()
        return JSONResponse(service.models())

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> Response:
        try:
            service.authorize(request)
            if model_id != service.model_name:
                raise ApiError(404, f"model {model_id!r} is not served here", "model", "model_not_found")
        except ApiError as exc:
            return exc.response()
        return JSONResponse(service.model_card())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        if not service.batcher.running:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready", "model": service.model_name})

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = service.metrics.exposition()
        return Response(payload, media_type=content_type)

    return app
