"""Reading an audio request: the upload within its size limit, then OpenAI's multipart fields.

Every refusal is an `ApiError` naming the field (`param`), so a client learns what to fix
from the 400 itself. A field dwkit cannot honour is refused rather than ignored: a transcript
that silently lacks it would look like success.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive

from dwkit.errors import ConfigError
from dwkit.longform.options import LongformOptions
from dwkit.longform.prompt import initial_prompt_tokens
from dwkit.serve.errors import ApiError
from dwkit.tokenizer import LANGUAGES, Tokenizer

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("segment", "word")
MB = 1024 * 1024
# Past the limit the rest of an upload is still read (and dropped) up to this much, so the
# client, which sends its whole body before reading, sees the 413 instead of a reset.
_DRAIN_BYTES = 64 * MB


@dataclass
class AudioRequest:
    """One transcription or translation request, its fields checked."""

    audio: bytes
    model: str
    language: str | None  # a language code, None: the config's (or detection)
    response_format: str
    temperature: float  # 0: the config's temperature fallback schedule
    stream: bool
    prompt: str | None = None  # OpenAI's prompt = faster-whisper's initial_prompt; None: the config's
    word_timestamps: bool = False  # timestamp_granularities[] holds "word"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it passes `limit` bytes (Content-Length or counted)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _DRAIN_BYTES:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + _DRAIN_BYTES:
            break
    if size > limit:
        raise _too_large(size, limit)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request is {size / MB:.2f} MB, over this server's limit of {limit / MB:g} MB "
        "(serve.max_request_mb in the server's config)",
        code="request_too_large",
    )


async def parse_form(request: Request, body: bytes) -> FormData:
    """The multipart form in `body` (already read within the size limit)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    receive: Receive = replay
    try:
        return await Request(request.scope, receive).form()
    except HTTPException as exc:  # starlette's answer to a malformed multipart body
        raise ApiError(400, f"could not read the multipart form: {exc.detail}") from exc


async def read_fields(form: FormData, tokenizer: Tokenizer, model_names: tuple[str, ...]) -> AudioRequest:
    """Check OpenAI's fields: file, model, language, prompt, response_format, temperature,
    timestamp_granularities[], stream."""
    upload = form.get("file")
    if upload is None:
        raise ApiError(400, "file: required (the audio file to transcribe, as a multipart file)", "file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "file: must be uploaded as a file, not a text field", "file")
    audio = await upload.read()
    if not audio:
        raise ApiError(400, "file: the uploaded file is empty", "file", "empty_file")
    model = _text(form, "model")
    if not model:
        raise ApiError(400, "model: required (GET /v1/models lists this server's model)", "model")
    if model not in model_names:
        raise ApiError(
            400,
            f"model {model!r} is not served here; use {' or '.join(map(repr, model_names))} (GET /v1/models)",
            "model",
            "model_not_found",
        )
    prompt = _prompt(_text(form, "prompt"), tokenizer)
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format {response_format!r}: choose one of {', '.join(RESPONSE_FORMATS)}",
            "response_format",
            "unsupported_value",
        )
    words = _word_granularity(form, response_format)
    return AudioRequest(
        audio=audio,
        model=model,
        language=_language(_text(form, "language"), tokenizer),
        response_format=response_format,
        temperature=_temperature(_text(form, "temperature")),
        stream=_boolean(_text(form, "stream"), "stream"),
        prompt=prompt,
        word_timestamps=words,
    )


def request_options(base: LongformOptions, request: AudioRequest, task: str) -> LongformOptions:
    """The config's long-form options with this request's language, task, temperature, prompt
    and word timestamps."""
    temperatures = (request.temperature,) if request.temperature > 0 else base.temperatures
    return dataclasses.replace(
        base,
        language=request.language or base.language,
        task=task,
        temperatures=temperatures,
        initial_prompt=request.prompt or base.initial_prompt,
        word_timestamps=base.word_timestamps or request.word_timestamps,
    )


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: must be a text field, not a file", name)
    return value.strip()


def _word_granularity(form: FormData, response_format: str) -> bool:
    """Whether word timestamps were asked for; OpenAI returns them in verbose_json only."""
    name = "timestamp_granularities[]"
    values = [v for key in (name, "timestamp_granularities") for v in form.getlist(key)]
    for value in values:
        if value not in GRANULARITIES:
            raise ApiError(400, f"{name} {value!r}: choose segment or word", name, "unsupported_value")
    if "word" in values and response_format != "verbose_json":
        raise ApiError(
            400,
            f"{name}: word timestamps come in response_format verbose_json only (asked: {response_format})",
            name,
            "unsupported_value",
        )
    return "word" in values


def _prompt(value: str, tokenizer: Tokenizer) -> str | None:
    """The prompt, checked as the initial prompt is (special tokens are refused)."""
    if not value:
        return None
    try:
        initial_prompt_tokens(tokenizer, value)
    except ConfigError as exc:
        raise ApiError(400, f"prompt: {exc}", "prompt", "unsupported_value") from exc
    return value


def _language(value: str, tokenizer: Tokenizer) -> str | None:
    """A language code, or None when not given; a model that cannot take it is a 400."""
    if not value:
        return None
    lowered = value.lower()
    code = lowered if lowered in LANGUAGES else {n: c for c, n in LANGUAGES.items()}.get(lowered)
    if not tokenizer.info.multilingual:
        if code != "en":
            raise ApiError(
                400,
                f"language {value!r}: this model is English-only; send language=en or leave it out",
                "language",
                "unsupported_language",
            )
        return None  # an English-only model's prompt has no language: same options as not given
    if code is None or f"<|{code}|>" not in tokenizer.info.lang_to_id:
        raise ApiError(
            400,
            f"language {value!r}: not a language of this model; use an ISO-639-1 code such as en, de, fr",
            "language",
            "unsupported_language",
        )
    return code


def _temperature(value: str) -> float:
    if not value:
        return 0.0
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    if not 0 <= temperature <= 1:
        raise ApiError(400, f"temperature {value!r}: must be a number from 0 to 1", "temperature")
    return temperature


def _boolean(value: str, name: str) -> bool:
    if value.lower() in ("", "false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise ApiError(400, f"{name} {value!r}: must be true or false", name)
