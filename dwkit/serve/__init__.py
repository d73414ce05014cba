"""`dwkit serve`: OpenAI's audio API (transcriptions, translations) in front of one loaded model.

The model, backend, mode and every decode setting come from the same validated config as
`dwkit transcribe` (dwkit.config, plus its `[serve]` table for the HTTP side). Concurrent
requests are decoded together by the batched long-form engine (`batcher`); requests are
parsed and checked in `forms`, answered in OpenAI's formats by `responses`, and counted in
Prometheus metrics (`metrics`). `app.create_app` wires them into a FastAPI application.
"""
