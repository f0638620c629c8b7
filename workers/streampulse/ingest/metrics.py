"""Prometheus metrics of the ingest worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram


class Tally:
    """Per-label counts kept in a plain dict on the hot path, added to a Counter in bulk.

    A labelled ``Counter.inc()`` takes a lock and a label lookup; at tens of thousands of events
    per second that is a measurable share of the CPU, so the worker flushes every few hundred.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self.counts: dict[str, int] = {}

    def add(self, label: str) -> None:
        counts = self.counts
        counts[label] = counts.get(label, 0) + 1

    def flush(self) -> None:
        for label, count in self.counts.items():
            self._counter.labels(label).inc(count)
        self.counts.clear()


EVENTS_IN = Counter(
    "streampulse_ingest_events_total",
    "Jetstream events received and normalized, by collection (or kind for identity/account).",
    ["collection"],
)
EVENTS_OUT = Counter(
    "streampulse_ingest_produced_total",
    "Records acknowledged by Kafka, by collection (dead letters under collection=dead_letter).",
    ["collection"],
)
BYTES_IN = Counter(
    "streampulse_ingest_received_bytes_total",
    "Websocket payload bytes received from Jetstream (compressed when compression is on).",
)
RECONNECTS = Counter(
    "streampulse_ingest_reconnects_total",
    "Jetstream connections that ended or failed, by endpoint and cause: closed (by the server), "
    "lost (no close frame), refused (no connection), idle (no frame for the idle timeout), "
    "oversized_frame (a frame over the websocket limit), past_oversized_frame (a planned "
    "reconnect once past one).",
    ["endpoint", "cause"],
)
LAG = Gauge(
    "streampulse_ingest_lag_seconds",
    "Now minus the time_us of the newest event received: how far behind the firehose we are.",
)
ACK_LATENCY = Histogram(
    "streampulse_ingest_ack_latency_seconds",
    "Time from produce() to the broker's acknowledgement.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CONNECTED = Gauge(
    "streampulse_ingest_connected",
    "1 while a Jetstream connection is open.",
)
