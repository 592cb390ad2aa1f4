"""Prometheus metrics for `GET /metrics` (SPEC §9).

Each app gets its own registry, so several apps in one process (tests) never
share counters. Parts of the server record into `Metrics`; the route renders it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The server's counters, gauges and latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_appended = Counter(
            "hookstream_events_appended", "Events appended to the log by this process", registry=self.registry
        )
        self.append_seconds = Histogram(
            "hookstream_append_seconds",
            "Time from an ingest call reaching storage to its events being durable",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge("hookstream_open_streams", "SSE streams open now", registry=self.registry)
        self.stream_events_sent = Counter(
            "hookstream_stream_events_sent", "Events written to SSE streams", registry=self.registry
        )
        self.deliveries = Counter(
            "hookstream_deliveries",
            "Custom-mode delivery attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "hookstream_delivery_seconds",
            "Latency of custom-mode delivery attempts",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.monitors_running = Gauge(
            "hookstream_monitors_running", "Account monitors running in this process", registry=self.registry
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
