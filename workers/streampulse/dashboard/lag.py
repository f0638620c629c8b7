"""Consumer lag from Kafka itself: log end offset minus committed offset, per group and topic.

No process exports it as a metric (a consumer knows its own position, not the group's), so the
dashboard asks the broker, as ``kafka-consumer-groups.sh --describe`` does. The read-committed
end offset is used: transaction markers are not records anyone will consume.

A broker that does not accept a TCP connection is reported at once, without a Kafka client: a
client would log a connection error every few seconds for as long as Kafka is down.
"""

from __future__ import annotations

import socket
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from streampulse.kafka import admin_client
from streampulse.settings import KafkaSettings


def reachable(bootstrap_servers: str, timeout_s: float) -> bool:
    """Whether any bootstrap server accepts a TCP connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def group_lag(
    committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> list[dict[str, Any]]:
    """Lag per topic over the partitions the group has committed offsets for."""
    topics: dict[str, dict[str, Any]] = {}
    for (topic, partition), offset in sorted(committed.items()):
        row = topics.setdefault(topic, {"topic": topic, "lag": 0, "partitions": 0})
        end = ends.get((topic, partition))
        if end is None:
            continue
        row["lag"] += max(end - offset, 0)
        row["partitions"] += 1
    return list(topics.values())


class ConsumerLag:
    """Lag of the configured consumer groups; one long-lived admin client while Kafka is up."""

    def __init__(self, kafka: KafkaSettings, groups: tuple[str, ...], timeout_s: float) -> None:
        self._kafka = kafka
        self._groups = groups
        self._timeout_s = timeout_s
        self._admin: AdminClient | None = None

    def read(self) -> dict[str, Any]:
        """``{"bootstrap", "groups": [{"group", "topics": [...], "lag"}], "error"}`` (blocking)."""
        out: dict[str, Any] = {"bootstrap": self._kafka.bootstrap_servers, "groups": []}
        if not self._groups:
            return out
        if self._admin is None:
            if not reachable(self._kafka.bootstrap_servers, min(self._timeout_s, 1.0)):
                return {**out, "error": f"Kafka unreachable at {self._kafka.bootstrap_servers}"}
            self._admin = admin_client(self._kafka)
        try:
            for group in self._groups:
                out["groups"].append(self._group(self._admin, group))
        except (KafkaException, FutureTimeout) as exc:
            self._admin = None  # a new client (and reachability probe) on the next read
            return {**out, "error": f"Kafka at {self._kafka.bootstrap_servers}: {exc}"}
        return out

    def _group(self, admin: AdminClient, group: str) -> dict[str, Any]:
        request = [ConsumerGroupTopicPartitions(group)]
        futures = admin.list_consumer_group_offsets(request, request_timeout=self._timeout_s)
        answer = futures[group].result(timeout=self._timeout_s)
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or []
            if tp.offset != OFFSET_INVALID and tp.offset >= 0
        }
        ends: dict[tuple[str, int], int] = {}
        if committed:
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
            specs = {TopicPartition(t, p): latest for t, p in committed}
            offsets = admin.list_offsets(
                specs,
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self._timeout_s,
            )
            for tp, future in offsets.items():
                ends[(tp.topic, tp.partition)] = future.result(timeout=self._timeout_s).offset
        topics = group_lag(committed, ends)
        return {"group": group, "topics": topics, "lag": sum(t["lag"] for t in topics)}
