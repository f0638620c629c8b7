"""Prometheus metrics of the model server, in the default registry, labelled by model."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "streampulse_serving_requests_total",
    "Prediction requests answered, by model and HTTP status.",
    ["model", "status"],
)
TEXTS = Counter("streampulse_serving_texts_total", "Texts scored, by model.", ["model"])
ERRORS = Counter(
    "streampulse_serving_errors_total",
    "Requests answered with an error, by model and kind (bad_request, overloaded, inference).",
    ["model", "kind"],
)
BATCH_SIZE = Histogram(
    "streampulse_serving_batch_size",
    "Texts per inference.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_WAIT = Histogram(
    "streampulse_serving_queue_wait_seconds",
    "Time a text waited in the queue before its inference started.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE = Histogram(
    "streampulse_serving_inference_seconds",
    "Time of one inference (tokenizing, ONNX Runtime, task head) for a whole batch.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
REQUEST_LATENCY = Histogram(
    "streampulse_serving_request_seconds",
    "Time from a request's arrival to its answer.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
QUEUED = Gauge("streampulse_serving_queued_texts", "Texts waiting for or in inference.", ["model"])
