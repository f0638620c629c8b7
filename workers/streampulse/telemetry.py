"""Process-level telemetry: the Prometheus endpoint every StreamPulse process serves.

Metric names follow ``streampulse_<stage>_<what>_<unit>``; counters end in ``_total``.
Each stage declares its own metrics next to its code and registers them in the default registry.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, start_http_server

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "streampulse_dead_letters_total",
    "Records sent to the dead-letter topic, by stage and reason.",
    ["stage", "reason"],
)


def serve_metrics(port: int, host: str) -> None:
    """Serve /metrics on ``host``:``port``; port 0 turns the endpoint off."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
