"""Prometheus metrics of the enrich worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "streampulse_enrich_consumed_total",
    "Raw records read, by what was done with them (enriched, skipped, dead_letter).",
    ["outcome"],
)
ENRICHED = Counter(
    "streampulse_enrich_enriched_total",
    "Enriched posts acknowledged by Kafka.",
)
MODEL_REQUESTS = Counter(
    "streampulse_enrich_model_requests_total",
    "HTTP requests to the model gateway, by model and outcome (ok or a failure reason).",
    ["model", "outcome"],
)
MODEL_LATENCY = Histogram(
    "streampulse_enrich_model_request_seconds",
    "Duration of one successful gateway request.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RETRIES = Counter(
    "streampulse_enrich_retries_total",
    "Gateway requests retried after a transient failure, by model.",
    ["model"],
)
BREAKER_STATE = Gauge(
    "streampulse_enrich_breaker_state",
    "Circuit breaker in front of the gateway: 0 closed, 1 half-open, 2 open.",
)
PAUSED = Gauge(
    "streampulse_enrich_paused",
    "1 while the worker's partitions are paused because the gateway is unhealthy.",
)
CYCLE_SECONDS = Histogram(
    "streampulse_enrich_cycle_seconds",
    "One cycle: consume a batch, score it, produce and commit.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
)
END_TO_END = Histogram(
    "streampulse_enrich_end_to_end_seconds",
    "From the raw record's Kafka timestamp to the enriched record's acknowledgement.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
