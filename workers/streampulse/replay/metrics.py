"""Prometheus metrics of the replay server (the process's default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Counter(
    "streampulse_replay_connections_total", "Subscribe connections accepted.", ["compress"]
)
ACTIVE = Gauge("streampulse_replay_connections_active", "Subscribe connections open now.")
EVENTS_SENT = Counter(
    "streampulse_replay_events_sent_total", "Events written to subscribers.", ["compress"]
)
MALFORMED_SENT = Counter(
    "streampulse_replay_malformed_sent_total",
    "Malformed frames injected (malformed_every).",
    ["compress", "kind"],
)
DROPS = Counter(
    "streampulse_replay_drops_total", "Connections aborted on purpose (drop_after).", ["compress"]
)
CLIENT_MESSAGES = Counter(
    "streampulse_replay_client_messages_total",
    "Messages from subscribers: options_update applied, or ignored as invalid.",
    ["outcome"],
)
