"""Bad requests get OpenAI-shaped errors with the right status, through the real openai client."""

from __future__ import annotations

import openai
import pytest

from tests.serve.conftest import MODEL_NAME, make_client


def _error(call) -> openai.APIStatusError:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.APIStatusError) as info:
        call()
    error = info.value
    assert set(error.body) == {"message", "type", "param", "code"}  # the openai client unwraps {"error": ...}
    assert error.body["message"]
    return error


def _transcribe(client, audio, **fields):  # type: ignore[no-untyped-def]
    return lambda: client.audio.transcriptions.create(
        file=audio.open("rb"), **{"model": MODEL_NAME, **fields}
    )


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"model": "whisper-large"}, "model", "not served here"),
        ({"response_format": "xml"}, "response_format", "choose one of json, text, srt, verbose_json, vtt"),
        ({"response_format": "diarized_json"}, "response_format", "choose one of"),
        ({"language": "de"}, "language", "English-only"),
        ({"language": "klingon"}, "language", "English-only"),
        (
            {"timestamp_granularities": ["word"]},
            "timestamp_granularities[]",
            "verbose_json only (asked: json)",
        ),
        (
            {"timestamp_granularities": ["segment", "word"], "response_format": "srt"},
            "timestamp_granularities[]",
            "verbose_json only",
        ),
        ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities[]", "choose segment or word"),
        ({"prompt": "Names <|endoftext|> Ana"}, "prompt", "special token <|endoftext|>"),
        ({"temperature": 1.5}, "temperature", "from 0 to 1"),
    ],
)
def test_bad_field_is_a_400_naming_it(client, speech_short, fields, param, says):
    error = _error(_transcribe(client, speech_short[0], **fields))
    assert error.status_code == 400
    assert error.body["param"] == param
    assert says in error.body["message"]
    assert error.body["type"] == "invalid_request_error"


def test_no_file_empty_file_and_non_audio_are_400(client):
    # transcriptions.create insists on a file, so this one goes through the client's own post
    missing = _error(
        lambda: client.post(
            "/audio/transcriptions",
            cast_to=object,
            body={"model": MODEL_NAME},
            files=[("attachment", ("a.wav", b"RIFF"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    )
    empty = _error(lambda: client.audio.transcriptions.create(file=("empty.wav", b""), model=MODEL_NAME))
    text = _error(
        lambda: client.audio.transcriptions.create(
            file=("notes.wav", b"not audio, just text\n" * 50), model=MODEL_NAME
        )
    )
    assert [e.status_code for e in (missing, empty, text)] == [400, 400, 400]
    assert [e.body["param"] for e in (missing, empty, text)] == ["file", "file", "file"]
    assert "required" in missing.body["message"]
    assert empty.body["code"] == "empty_file"
    assert text.body["code"] == "invalid_audio"


def test_translation_with_an_english_only_model_is_a_400(client, speech_short):
    error = _error(
        lambda: client.audio.translations.create(file=speech_short[0].open("rb"), model=MODEL_NAME)
    )
    assert error.status_code == 400
    assert "English-only" in error.body["message"] and "cannot translate" in error.body["message"]


def test_stream_in_chunked_mode_is_a_400(start_server, speech_short):
    with start_server(mode="chunked") as url:
        client = make_client(url)
        error = _error(lambda: list(_transcribe(client, speech_short[0], stream=True)()))
    assert error.status_code == 400 and error.body["param"] == "stream"


def test_unknown_model_id_and_path_are_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("whisper-large")
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.get("/nothing-here", cast_to=object)


def test_upload_over_the_size_limit_is_a_413(start_server, speech_short):
    with start_server(max_request_mb=0.05) as url:  # speech_short is ~240 kB
        error = _error(_transcribe(make_client(url), speech_short[0]))
    assert error.status_code == 413
    assert "serve.max_request_mb" in error.body["message"]


def test_audio_over_the_duration_limit_is_a_400(start_server, speech_short):
    with start_server(max_audio_s=2.0) as url:  # speech_short is ~7.6 s
        error = _error(_transcribe(make_client(url), speech_short[0]))
    assert error.status_code == 400 and error.body["code"] == "audio_too_long"


def test_request_over_the_time_limit_is_a_504_and_the_server_carries_on(start_server, speech_short):
    with start_server(request_timeout_s=0.001) as url:  # no decode is that fast
        client = make_client(url)
        error = _error(_transcribe(client, speech_short[0]))
        assert client.models.list().data[0].id == MODEL_NAME
    assert error.status_code == 504 and error.body["code"] == "timeout"


def test_api_key_from_the_environment_is_required(start_server, speech_short, reference):
    audio = speech_short[0]
    with start_server(api_key_env="TEST_KEY", environ={"TEST_KEY": "s3cret"}) as url:
        anonymous = _error(_transcribe(make_client(url, api_key="wrong"), audio))
        with pytest.raises(openai.AuthenticationError):
            make_client(url, api_key="wrong").models.list()
        answer = make_client(url, api_key="s3cret").audio.transcriptions.create(
            file=audio.open("rb"), model=MODEL_NAME, response_format="text"
        )
    assert anonymous.status_code == 401 and anonymous.body["code"] == "invalid_api_key"
    assert "TEST_KEY" in anonymous.body["message"]
    assert answer == reference(audio, "txt")
