"""Kafka through Strimzi (``kafka.strimzi.io/v1``, KRaft): one Kafka, one dual-role node pool and
the pipeline's three KafkaTopics. With ``observability.metrics`` the Kafka also runs Strimzi's
Kafka Exporter (topic offsets and consumer-group lag as Prometheus metrics on its
``tcp-prometheus`` port). With ``kafka.mode: External`` nothing is rendered and the workers use the
given bootstrap servers."""

from __future__ import annotations

from streampulse_operator.manifests import common as c
from streampulse_operator.spec import Owner, Resources, StreamPulseSpec, Topic

STRIMZI = "kafka.strimzi.io/v1"
CLUSTER_LABEL = "strimzi.io/cluster"
COMPONENT = "kafka"
PLAIN_PORT = 9092
HOUR_MS = 3_600_000
EXPORTER_METRICS_PORT = "tcp-prometheus"  # the port name Strimzi gives every metrics endpoint


def exporter_name(owner: Owner) -> str:
    """The ``strimzi.io/name`` label of the Kafka Exporter pods Strimzi runs for this cluster."""
    return f"{owner.name}-kafka-exporter"


def bootstrap_servers(owner: Owner, spec: StreamPulseSpec) -> str:
    if spec.kafka.mode == "External":
        return spec.kafka.bootstrapServers or ""
    return f"{owner.name}-kafka-bootstrap.{owner.namespace}.svc:{PLAIN_PORT}"


def render_kafka(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    if spec.kafka.mode == "External":
        return []
    kafka = spec.kafka
    min_isr = 2 if kafka.replicas >= 3 else 1
    cluster_spec: dict[str, object] = {
        "kafka": {
            "version": kafka.version,
            "listeners": [
                {"name": "plain", "port": PLAIN_PORT, "type": "internal", "tls": False},
                {"name": "tls", "port": 9093, "type": "internal", "tls": True},
            ],
            "config": {
                "offsets.topic.replication.factor": kafka.replicas,
                "transaction.state.log.replication.factor": kafka.replicas,
                "transaction.state.log.min.isr": min_isr,
                "default.replication.factor": kafka.replicas,
                "min.insync.replicas": min_isr,
                "auto.create.topics.enable": False,
            },
        },
        "entityOperator": {
            "topicOperator": {
                "resources": c.resources(
                    Resources(), requests=("100m", "256Mi"), limits=("500m", "512Mi")
                )
            }
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
            c.child_name(owner, "dual"),
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
                "pod": {"securityContext": {"runAsNonRoot": True}},
                "kafkaContainer": {"securityContext": c.container_security_context()},
            },
        },
    )
    topics = [
        _topic(owner, key, topic)
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
            "pod": {"securityContext": {"runAsNonRoot": True}},
            "container": {"securityContext": c.container_security_context()},
        },
    }


def _topic(owner: Owner, key: str, topic: Topic) -> c.Manifest:
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
            "replicas": topic.replicas,
            "config": {
                "retention.ms": topic.retentionHours * HOUR_MS,
                "cleanup.policy": "delete",
                "compression.type": "producer",
            },
        },
    )
