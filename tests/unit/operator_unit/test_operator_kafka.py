"""Kafka as Strimzi runs it: a supported version, replication that follows the brokers, and
names that fit every object Strimzi and the Flink operator derive from them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from streampulse_operator.manifests import render
from streampulse_operator.manifests.flink import MAX_CLUSTER_ID, flink_name
from streampulse_operator.manifests.kafka import broker_pod_name
from streampulse_operator.spec import (
    DEFAULT_KAFKA_VERSION,
    STRIMZI_VERSION,
    SUPPORTED_KAFKA_VERSIONS,
    Owner,
)
from tests.unit.operator_unit.cases import OWNER, defaulted
from tests.unit.operator_unit.schemas import streampulse_schema, upstream_facts_dir

pytestmark = pytest.mark.unit
DNS_LABEL = 63


def strimzi_supported_versions() -> tuple[list[str], str]:
    """Strimzi's kafka-versions.yaml: the versions it runs, and its default."""
    path = upstream_facts_dir() / "strimzi-kafka-versions.yaml"
    entries = yaml.safe_load(path.read_text())
    supported = [str(e["version"]) for e in entries if e.get("supported")]
    (default,) = [str(e["version"]) for e in entries if e.get("default")]
    return supported, default


def test_kafka_versions_are_strimzis_supported_ones() -> None:
    supported, strimzi_default = strimzi_supported_versions()
    assert STRIMZI_VERSION == "1.2.0"
    assert list(SUPPORTED_KAFKA_VERSIONS) == supported
    assert DEFAULT_KAFKA_VERSION in supported
    assert strimzi_default == DEFAULT_KAFKA_VERSION


def test_crd_enum_and_default_are_the_codes_list() -> None:
    version = streampulse_schema()["properties"]["spec"]["properties"]["kafka"]["properties"][
        "version"
    ]
    assert version["enum"] == list(SUPPORTED_KAFKA_VERSIONS)
    assert version["default"] == DEFAULT_KAFKA_VERSION


def test_the_rendered_kafka_runs_the_default_version() -> None:
    (kafka,) = [o for o in render(OWNER, defaulted({})) if o["kind"] == "Kafka"]
    assert kafka["spec"]["kafka"]["version"] in strimzi_supported_versions()[0]


def _objects(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(OWNER, defaulted(spec))}


@pytest.mark.parametrize(
    ("brokers", "replicas", "in_sync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_topic_replication_follows_the_brokers(brokers: int, replicas: int, in_sync: int) -> None:
    objects = _objects({"kafka": {"replicas": brokers}})
    for topic in ("raw", "enriched", "dlq"):
        spec = objects[("KafkaTopic", f"demo-{topic}")]["spec"]
        assert spec["replicas"] == replicas
        assert spec["config"]["min.insync.replicas"] == in_sync
    config = objects[("Kafka", "demo")]["spec"]["kafka"]["config"]
    assert config["offsets.topic.replication.factor"] == replicas
    assert config["transaction.state.log.replication.factor"] == replicas
    assert config["transaction.state.log.min.isr"] == in_sync
    assert config["min.insync.replicas"] == in_sync
    assert config["default.replication.factor"] == replicas


def test_a_topic_keeps_its_own_replication() -> None:
    spec = {
        "kafka": {"replicas": 5},
        "topics": {"raw": {"replicas": 5, "minInSyncReplicas": 3}, "dlq": {"replicas": 2}},
    }
    objects = _objects(spec)
    raw = objects[("KafkaTopic", "demo-raw")]["spec"]
    dlq = objects[("KafkaTopic", "demo-dlq")]["spec"]
    assert (raw["replicas"], raw["config"]["min.insync.replicas"]) == (5, 3)
    assert (dlq["replicas"], dlq["config"]["min.insync.replicas"]) == (2, 1)


def _derived_names(owner: Owner, objects: list[dict[str, Any]]) -> dict[str, int]:
    """Names that must be DNS labels, with their length limit."""
    names = {o["metadata"]["name"]: DNS_LABEL for o in objects if o["kind"] == "Service"}
    names[flink_name(owner)] = MAX_CLUSTER_ID
    if any(o["kind"] == "KafkaNodePool" for o in objects):
        names[broker_pod_name(owner, 999)] = DNS_LABEL  # Strimzi's node ids; 3 digits
    for obj in objects:
        if obj["kind"] in {"StatefulSet"}:  # its pods' controller-revision-hash label
            names[obj["metadata"]["name"] + "-x" * 5] = DNS_LABEL
        if obj["kind"] in {"Job", "Deployment"}:  # the job-name label / Deployment name
            names[obj["metadata"]["name"]] = DNS_LABEL
    return names


def _schema_limits() -> tuple[int, int, int]:
    """The name limits the CRD declares: overall, with managed Kafka, and name + model."""
    schema = streampulse_schema()
    overall = schema["properties"]["metadata"]["properties"]["name"]["maxLength"]
    rules = " ".join(r["rule"] for r in schema["x-kubernetes-validations"])
    assert "size(self.metadata.name) <= 26" in rules
    assert "size(self.metadata.name) + size(m.name) <= 56" in rules
    return overall, 26, 56


@pytest.mark.parametrize("kafka_mode", ["Managed", "External"])
def test_the_longest_allowed_names_fit_every_derived_name(kafka_mode: str) -> None:
    overall, managed_kafka, with_model = _schema_limits()
    length = managed_kafka if kafka_mode == "Managed" else overall
    owner = OWNER.model_copy(update={"name": "n" * length})
    model = "m" * min(30, with_model - length)
    spec: dict[str, Any] = {
        "models": [{"name": model, "task": "token_classification"}],
        "observability": {"serviceMonitors": True},
    }
    if kafka_mode == "External":
        spec["kafka"] = {"mode": "External", "bootstrapServers": "kafka:9092"}
    objects = render(owner, defaulted(spec))
    for name, limit in _derived_names(owner, objects).items():
        assert len(name) <= limit, (name, len(name), limit)


def test_a_longer_name_would_not_fit() -> None:
    """The limits are tight: one more character breaks a derived name."""
    owner = OWNER.model_copy(update={"name": "n" * 27})
    assert len(broker_pod_name(owner, 999)) > DNS_LABEL
    owner = OWNER.model_copy(update={"name": "n" * 40})
    assert len(flink_name(owner)) > MAX_CLUSTER_ID


def test_topics_carry_no_finalizer_that_would_outlive_their_topic_operator() -> None:
    """Deleting a StreamPulse collects the Kafka, its topic operator and the KafkaTopics
    together; with Strimzi's topic finalizers on, nothing would remove them and the topics would
    hang in deletion (and their namespace in Terminating)."""
    (kafka,) = [o for o in render(OWNER, defaulted({})) if o["kind"] == "Kafka"]
    container = kafka["spec"]["entityOperator"]["template"]["topicOperatorContainer"]
    assert {"name": "STRIMZI_USE_FINALIZERS", "value": "false"} in container["env"]
