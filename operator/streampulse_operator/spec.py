"""The StreamPulse spec as typed, frozen models.

The CRD in ``crds/`` is the source of truth for validation and defaults; these models mirror it
(same camelCase names, same defaults, checked by a unit test) so renderers read typed fields.
The API server has already defaulted and validated every object the operator sees.
"""

# ruff: noqa: N815 - field names are the CRD's camelCase names
from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["Managed", "External"]
# The Kafka versions the targeted Strimzi release runs (its kafka-versions.yaml, `supported:
# true`). The CRD's enum must equal this list (a unit test checks both against Strimzi's file).
STRIMZI_VERSION = "1.2.0"
KafkaVersion = Literal["4.2.0", "4.2.1", "4.3.0", "4.3.1"]
SUPPORTED_KAFKA_VERSIONS: tuple[str, ...] = get_args(KafkaVersion)
DEFAULT_KAFKA_VERSION: KafkaVersion = "4.3.1"  # Strimzi 1.2.0's default
# Topics are replicated to at most this many brokers unless a topic says otherwise.
DEFAULT_TOPIC_REPLICAS = 3
Task = Literal["multi_label_classification", "single_label_classification", "token_classification"]

DEFAULT_JETSTREAM_ENDPOINTS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
    "wss://jetstream1.us-west.bsky.network/subscribe",
    "wss://jetstream2.us-west.bsky.network/subscribe",
)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


Quantity = int | str


class ResourceList(_Spec):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Spec):
    requests: ResourceList = ResourceList()
    limits: ResourceList = ResourceList()


class Storage(_Spec):
    size: str = "20Gi"
    storageClassName: str | None = None


class Image(_Spec):
    repository: str = "ghcr.io/streampulse/streampulse"
    tag: str = "0.1.0"
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def models_reference(self) -> str:
        """The model-server image (models baked in at build time) that goes with this one."""
        return f"{self.repository}-models:{self.tag}"


class Source(_Spec):
    endpoints: tuple[str, ...] = DEFAULT_JETSTREAM_ENDPOINTS
    collections: tuple[str, ...] = ()
    compress: bool = True


class Kafka(_Spec):
    mode: Mode = "Managed"
    bootstrapServers: str | None = None
    version: KafkaVersion = DEFAULT_KAFKA_VERSION
    replicas: int = 1
    storage: Storage = Storage()
    resources: Resources = Resources()


class Topic(_Spec):
    name: str
    partitions: int = 6
    replicas: int | None = None
    minInSyncReplicas: int | None = None
    retentionHours: int = 24


class Topics(_Spec):
    raw: Topic = Topic(name="bluesky.stream.raw")
    enriched: Topic = Topic(name="bluesky.stream.enriched")
    dlq: Topic = Topic(name="bluesky.stream.dlq", partitions=1, retentionHours=168)


class Model(_Spec):
    name: str
    task: Task
    modelDir: str | None = None
    image: str | None = None
    minReplicas: int = 1
    maxReplicas: int = 3
    targetCPUUtilization: int = 70
    scaleDownStabilizationSeconds: int = 300
    maxBatchSize: int = 32
    resources: Resources = Resources()


DEFAULT_MODELS = (
    Model(name="toxicity", task="multi_label_classification"),
    Model(name="ner", task="token_classification"),
    Model(name="sentiment", task="single_label_classification"),
)


class Gateway(_Spec):
    """Gateway API HTTPRoutes publishing the model APIs (none without ``gatewayName``)."""

    gatewayName: str | None = None
    gatewayNamespace: str | None = None
    sectionName: str | None = None
    hostnames: tuple[str, ...] = ()


class Ingestion(_Spec):
    replicas: int = 1
    resources: Resources = Resources()


class Enrichment(_Spec):
    replicas: int = 2
    concurrency: int = 8
    batchSize: int = 64
    resources: Resources = Resources()


class FlinkProcess(_Spec):
    cpu: float = 1
    memory: str = "2048m"


class Flink(_Spec):
    image: str = "ghcr.io/streampulse/streampulse-flink:0.1.0"
    flinkVersion: Literal["v1_20", "v2_0", "v2_1", "v2_2"] = "v2_1"
    parallelism: int = 2
    checkpointIntervalSeconds: int = 60
    taskSlots: int = 2
    jobManager: FlinkProcess = FlinkProcess()
    taskManager: FlinkProcess = FlinkProcess()


class Lakehouse(_Spec):
    mode: Mode = "Managed"
    bucket: str = "streampulse"
    endpoint: str | None = None
    credentialsSecretName: str | None = None
    minioImage: str = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    storage: Storage = Storage()


class Trino(_Spec):
    enabled: bool = True
    image: str = "ghcr.io/streampulse/streampulse-trino:0.1.0"
    workers: int = 1
    resources: Resources = Resources()


class Observability(_Spec):
    metrics: bool = True
    serviceMonitors: bool = False
    otlpEndpoint: str | None = None
    logFormat: Literal["json", "text"] = "json"


class NetworkPolicies(_Spec):
    enabled: bool = True
    prometheusNamespace: str = ""
    prometheusPodLabels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"}
    )


class StreamPulseSpec(_Spec):
    suspend: bool = False
    image: Image = Image()
    source: Source = Source()
    kafka: Kafka = Kafka()
    topics: Topics = Topics()
    models: tuple[Model, ...] = DEFAULT_MODELS
    gateway: Gateway = Gateway()
    ingestion: Ingestion = Ingestion()
    enrichment: Enrichment = Enrichment()
    flink: Flink = Flink()
    lakehouse: Lakehouse = Lakehouse()
    trino: Trino = Trino()
    observability: Observability = Observability()
    networkPolicies: NetworkPolicies = NetworkPolicies()


class Owner(_Spec):
    """The StreamPulse object the children belong to."""

    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    uid: str = Field(min_length=1)
    generation: int = 1
