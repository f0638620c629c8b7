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
    "Bad frames injected, by kind (malformed_every, bomb_every, oversized_every, deep_every).",
    ["compress", "kind"],
)
DROPS = Counter(
    "streampulse_replay_drops_total", "Connections aborted on purpose (drop_after).", ["compress"]
)
SILENCES = Counter(
    "streampulse_replay_silences_total",
    "Connections that went silent on purpose (silent_after).",
    ["compress"],
)
CLIENT_MESSAGES = Counter(
    "streampulse_replay_client_messages_total",
    "Messages from subscribers: options_update applied, or ignored as invalid.",
    ["outcome"],
)
