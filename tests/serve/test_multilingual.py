"""Translations and languages on the real multilingual base (slow: a second, larger model)."""

from __future__ import annotations

import openai
import pytest

from tests.serve.conftest import MODEL_NAME, make_client, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_server(base_dir, serve_dir):  # type: ignore[no-untyped-def]
    from dwkit.config import Config
    from dwkit.serve.app import create_app
    from dwkit.serve.background import serving

    config = write_config(serve_dir / "base.toml", base_dir)
    with serving(create_app(Config.from_file(config, env={}), environ={})) as url:
        yield url, config


def _cli(config, audio, *flags: str) -> str:  # type: ignore[no-untyped-def]
    import contextlib
    import io

    from dwkit.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["transcribe", "--config", str(config), str(audio), *flags]) == 0
    return out.getvalue()


def test_translation_equals_dwkit_transcribe_task_translate(base_server, speech_short):
    url, config = base_server
    with speech_short[0].open("rb") as f:
        answer = make_client(url).audio.translations.create(file=f, model=MODEL_NAME, response_format="text")
    assert answer == _cli(config, speech_short[0], "--task", "translate")


def test_language_is_checked_against_the_models_languages(base_server, speech_short):
    url, config = base_server
    client = make_client(url)
    with speech_short[0].open("rb") as f:
        answer = client.audio.transcriptions.create(
            file=f, model=MODEL_NAME, language="en", response_format="text"
        )
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(file=speech_short[0].open("rb"), model=MODEL_NAME, language="xx")
    assert answer == _cli(config, speech_short[0], "--language", "en")
    assert (
        bad.value.body["param"] == "language" and "not a language of this model" in bad.value.body["message"]
    )
