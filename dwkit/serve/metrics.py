"""Prometheus metrics of one server (its own registry, so several apps in one process,
as in the tests, never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dwkit_serve_requests",
            "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "dwkit_serve_errors",
            "Requests refused or failed, by endpoint and error code",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "dwkit_serve_in_flight_requests", "Audio requests holding a slot now", registry=self.registry
        )
        self.queue_depth = Gauge(
            "dwkit_serve_queue_depth", "Requests waiting for a batch", registry=self.registry
        )
        self.queue_depth.set_function(queue_depth)
        self.audio_seconds = Counter(
            "dwkit_serve_audio_seconds", "Seconds of audio transcribed", registry=self.registry
        )
        self.latency = Histogram(
            "dwkit_serve_request_duration_seconds",
            "Audio request latency, upload to answer",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "dwkit_serve_batch_size",
            "Requests decoded together per engine call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
