"""Concurrent requests share batches, each gets its own transcript, and leaving frees a slot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.serve.conftest import MODEL_NAME, make_client, metric, raw_upload, wait_for


def test_parallel_requests_are_decoded_in_one_batch_and_none_are_mixed_up(start_server, clips, reference):
    order = clips + clips[::-1]  # 8 requests, each clip twice, so a swap would show
    # The first request waits for the other seven (max_wait_ms far above any upload time).
    with start_server(max_batch_size=len(order), max_wait_ms=120_000.0) as url:
        client = make_client(url)

        def ask(audio):  # type: ignore[no-untyped-def]
            with audio.open("rb") as f:
                return client.audio.transcriptions.create(file=f, model=MODEL_NAME, response_format="text")

        with ThreadPoolExecutor(len(order)) as pool:
            answers = list(pool.map(ask, order))
        batches = metric(url, "dwkit_serve_batch_size_count"), metric(url, "dwkit_serve_batch_size_sum")
    expected = dict(zip(clips, reference(clips, "txt")))  # one `dwkit transcribe` run over the four
    assert answers == [expected[audio] for audio in order]
    assert len(set(answers)) == len(clips)  # different clips, different transcripts
    assert batches == (1, len(order))  # one engine call decoded all eight


def test_client_leaving_mid_upload_frees_its_slot(start_server, speech_short, reference):
    audio = speech_short[0]
    with start_server(max_concurrent=1) as url:
        client = make_client(url)
        sock, request = raw_upload(url, audio.read_bytes(), model=MODEL_NAME)
        sock.sendall(request[: len(request) // 2])  # and never the rest
        wait_for(lambda: metric(url, "dwkit_serve_in_flight_requests") == 1, "the upload takes the one slot")
        with pytest.raises(openai.RateLimitError) as full:
            client.audio.transcriptions.create(file=audio.open("rb"), model=MODEL_NAME)
        sock.close()
        wait_for(lambda: metric(url, "dwkit_serve_in_flight_requests") == 0, "the slot is given back")
        answer = client.audio.transcriptions.create(
            file=audio.open("rb"), model=MODEL_NAME, response_format="text"
        )
        closed = metric(url, "dwkit_serve_errors_total", endpoint="transcribe", code="client_closed")
    assert full.value.status_code == 429 and full.value.body["code"] == "rate_limit_exceeded"
    assert answer == reference(audio, "txt")
    assert closed == 1


def test_client_leaving_mid_decode_frees_its_slot_and_the_next_answer_is_its_own(
    start_server, clips, reference
):
    with start_server(max_concurrent=1) as url:
        sock, request = raw_upload(url, clips[0].read_bytes(), model=MODEL_NAME)
        sock.sendall(request)
        wait_for(lambda: metric(url, "dwkit_serve_batch_size_count") == 1, "the decode starts")
        sock.close()
        wait_for(lambda: metric(url, "dwkit_serve_in_flight_requests") == 0, "the slot is given back")
        with clips[1].open("rb") as f:
            answer = make_client(url).audio.transcriptions.create(
                file=f, model=MODEL_NAME, response_format="text"
            )
    assert answer == reference(clips[1], "txt")


def test_client_leaving_a_stream_frees_its_slot(start_server, clips, reference):
    with start_server(max_concurrent=1) as url:
        sock, request = raw_upload(url, clips[0].read_bytes(), model=MODEL_NAME, stream="true")
        sock.sendall(request)
        wait_for(lambda: metric(url, "dwkit_serve_batch_size_count") == 1, "the streamed decode starts")
        sock.close()
        wait_for(lambda: metric(url, "dwkit_serve_in_flight_requests") == 0, "the slot is given back")
        with clips[1].open("rb") as f:
            events = list(make_client(url).audio.transcriptions.create(file=f, model=MODEL_NAME, stream=True))
    assert events[-1].text == reference(clips[1], "txt").strip()
