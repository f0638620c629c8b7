"""Kafka through Strimzi (``kafka.strimzi.io/v1``, KRaft): one Kafka, one dual-role node pool and
the pipeline's three KafkaTopics, every Strimzi pod template restricted. Replication follows
the brokers (min(3, brokers) unless a topic says otherwise) and ``min.insync.replicas`` follows
the replication, so acks=all writes and transactions are always accepted. With
``observability.metrics`` the Kafka also runs Strimzi's Kafka Exporter (topic offsets and
consumer-group lag as Prometheus metrics on its ``tcp-prometheus`` port). With
``kafka.mode: External`` nothing is rendered and the workers use the given bootstrap servers."""

from __future__ import annotations

from streampulse_operator.manifests import common as c
from streampulse_operator.spec import (
    DEFAULT_TOPIC_REPLICAS,
    Owner,
    Resources,
    StreamPulseSpec,
    Topic,
)

STRIMZI = "kafka.strimzi.io/v1"
CLUSTER_LABEL = "strimzi.io/cluster"
COMPONENT = "kafka"
PLAIN_PORT = 9092
HOUR_MS = 3_600_000
EXPORTER_METRICS_PORT = "tcp-prometheus"  # the port name Strimzi gives every metrics endpoint


def _pod_security(*, broker: bool = False) -> dict[str, object]:
    """Strimzi's images run as their own user (1001, group 0); a pod template's securityContext
    replaces Strimzi's default one, so the broker pods keep its fsGroup 0 (the data volume stays
    writable) and add what the restricted profile asks for."""
    context: dict[str, object] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if broker:
        context["fsGroup"] = 0
    return context


def exporter_name(owner: Owner) -> str:
    """The ``strimzi.io/name`` label of the Kafka Exporter pods Strimzi runs for this cluster."""
    return f"{owner.name}-kafka-exporter"


def bootstrap_servers(owner: Owner, spec: StreamPulseSpec) -> str:
    if spec.kafka.mode == "External":
        return spec.kafka.bootstrapServers or ""
    return f"{owner.name}-kafka-bootstrap.{owner.namespace}.svc:{PLAIN_PORT}"


def topic_replicas(spec: StreamPulseSpec, topic: Topic) -> int:
    """A topic's replication factor: its own, else min(3, brokers) with a managed Kafka, else -1
    (the external cluster's ``default.replication.factor``)."""
    if topic.replicas is not None:
        return topic.replicas
    if spec.kafka.mode == "External":
        return -1
    return min(DEFAULT_TOPIC_REPLICAS, spec.kafka.replicas)


def min_in_sync(replicas: int) -> int:
    """``min.insync.replicas`` for a replication factor: with acks=all (every producer of the
    pipeline, and transactions), a write needs this many copies, so it must not exceed the
    replicas; 2 of 3 or more survives one broker down without losing acknowledged writes."""
    return 2 if replicas >= 3 else 1


def topic_min_in_sync(spec: StreamPulseSpec, topic: Topic) -> int | None:
    if topic.minInSyncReplicas is not None:
        return topic.minInSyncReplicas
    replicas = topic_replicas(spec, topic)
    return None if replicas < 0 else min_in_sync(replicas)


def pool_name(owner: Owner) -> str:
    """The KafkaNodePool; Strimzi names its pods ``<cluster>-<pool>-<node id>``."""
    return c.child_name(owner, "dual")


def broker_pod_name(owner: Owner, node_id: int) -> str:
    return f"{owner.name}-{pool_name(owner)}-{node_id}"


def render_kafka(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    if spec.kafka.mode == "External":
        return []
    kafka = spec.kafka
    internal = min(DEFAULT_TOPIC_REPLICAS, kafka.replicas)
    # Only the pipeline's own pods reach the plain listener (Strimzi renders the NetworkPolicy,
    # and always lets its own components through).
    peers = [{"podSelector": {"matchLabels": {c.INSTANCE_LABEL: owner.name}}}]
    listeners: list[dict[str, object]] = [
        {"name": "plain", "port": PLAIN_PORT, "type": "internal", "tls": False},
        {"name": "tls", "port": 9093, "type": "internal", "tls": True},
    ]
    if spec.networkPolicies.enabled:
        listeners = [{**listener, "networkPolicyPeers": peers} for listener in listeners]
    cluster_spec: dict[str, object] = {
        "kafka": {
            "version": kafka.version,
            "listeners": listeners,
            "config": {
                "offsets.topic.replication.factor": internal,
                "transaction.state.log.replication.factor": internal,
                "transaction.state.log.min.isr": min_in_sync(internal),
                "default.replication.factor": internal,
                "min.insync.replicas": min_in_sync(internal),
                "auto.create.topics.enable": False,
            },
        },
        "entityOperator": {
            "topicOperator": {
                "resources": c.resources(
                    Resources(), requests=("100m", "256Mi"), limits=("500m", "512Mi")
                )
            },
            "template": {
                "pod": {"securityContext": _pod_security()},
                "topicOperatorContainer": {
                    "securityContext": c.container_security_context(),
                    # Deleting a StreamPulse deletes its Kafka, its topic operator and its
                    # KafkaTopics at once; a topic finalizer would then never be removed and the
                    # topics (and their namespace) would hang in deletion (docs/operator.md).
                    "env": [{"name": "STRIMZI_USE_FINALIZERS", "value": "false"}],
                },
            },
        },
    }
    if spec.observability.metrics:
        cluster_spec["kafkaExporter"] = _exporter()
    cluster = c.obj(STRIMZI, "Kafka", c.metadata(owner, owner.name, COMPONENT), spec=cluster_spec)
    storage: dict[str, object] = {
        "type": "persistent-claim",
        "size": kafka.storage.size,
        "deleteClaim": False,
        "kraftMetadata": "shared",
    }
    if kafka.storage.storageClassName:
        storage["class"] = kafka.storage.storageClassName
    pool = c.obj(
        STRIMZI,
        "KafkaNodePool",
        c.metadata(
            owner,
            pool_name(owner),
            COMPONENT,
            labels={**c.labels(owner, COMPONENT), CLUSTER_LABEL: owner.name},
        ),
        spec={
            "replicas": kafka.replicas,
            "roles": ["controller", "broker"],
            "storage": storage,
            "resources": c.resources(
                kafka.resources, requests=("500m", "2Gi"), limits=("2", "4Gi")
            ),
            "template": {
                "pod": {"securityContext": _pod_security(broker=True)},
                "kafkaContainer": {"securityContext": c.container_security_context()},
            },
        },
    )
    topics = [
        _topic(owner, spec, key, topic)
        for key, topic in (
            ("raw", spec.topics.raw),
            ("enriched", spec.topics.enriched),
            ("dlq", spec.topics.dlq),
        )
    ]
    return [cluster, pool, *topics]


def _exporter() -> dict[str, object]:
    """Strimzi's Kafka Exporter over every topic and consumer group (the enrich worker's and the
    Flink job's), restricted like the brokers."""
    return {
        "topicRegex": ".*",
        "groupRegex": ".*",
        "resources": c.resources(Resources(), requests=("50m", "64Mi"), limits=("500m", "256Mi")),
        "template": {
            "pod": {"securityContext": _pod_security()},
            "container": {"securityContext": c.container_security_context()},
        },
    }


def _topic(owner: Owner, spec: StreamPulseSpec, key: str, topic: Topic) -> c.Manifest:
    config: dict[str, object] = {
        "retention.ms": topic.retentionHours * HOUR_MS,
        "cleanup.policy": "delete",
        "compression.type": "producer",
    }
    in_sync = topic_min_in_sync(spec, topic)
    if in_sync is not None:
        config["min.insync.replicas"] = in_sync
    return c.obj(
        STRIMZI,
        "KafkaTopic",
        c.metadata(
            owner,
            c.child_name(owner, key),
            COMPONENT,
            labels={**c.labels(owner, COMPONENT), CLUSTER_LABEL: owner.name},
        ),
        spec={
            "topicName": topic.name,
            "partitions": topic.partitions,
            "replicas": topic_replicas(spec, topic),
            "config": config,
        },
    )
