"""What a user's cluster has around the pipeline, as real pods in their own namespace: a Kafka
broker (the project's launcher), an S3 server (versitygw) and the replay server, plus a toolbox
pod (the workers image) that reads topics from inside the cluster.

Every pod here is restricted too (the namespace enforces it): non-root, read-only root, no
capabilities, scratch space on ``emptyDir`` volumes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from streampulse_operator.manifests import kafka, lakehouse
from streampulse_operator.manifests.common import INSTANCE_LABEL
from streampulse_operator.spec import Owner, StreamPulseSpec
from tests.harness.cluster import Cluster
from tests.harness.pipeline import kube
from tests.harness.pipeline.images import KAFKA_PORT, REPLAY_PORT, S3_PORT, TestImages

INFRA_NAMESPACE = "sp-infra"
CREDENTIALS_SECRET = "lakehouse-credentials"
BUCKET = "streampulse"
APP_LABEL = "streampulse.io/system-test"
REPLAY_RATE = 25
"""Events per second the replay serves (the local comparison replays arrivals at this rate)."""
S3_NAME = "versitygw"
"""Not ``s3``: Hadoop's S3A client (Flink's S3 file system) takes a host ``s3.<x>.svc`` for an
AWS endpoint of region ``<x>`` and signs for it, which the server refuses."""


@dataclass(frozen=True)
class Infra:
    """Where the pipeline's Kafka and S3 are and how the test reaches them."""

    namespace: str = INFRA_NAMESPACE
    """The test's own pods: the replay, and in local mode Kafka, S3 and the toolbox."""
    access_key: str = "streampulse-system"
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16))
    bootstrap_servers: str = f"kafka.{INFRA_NAMESPACE}.svc:{KAFKA_PORT}"
    s3_namespace: str = INFRA_NAMESPACE
    s3_service: str = S3_NAME
    credentials_secret: str = CREDENTIALS_SECRET
    """The lakehouse credentials in the pipeline's namespace (the test writes them)."""
    toolbox_namespace: str = INFRA_NAMESPACE
    toolbox_labels: tuple[tuple[str, str], ...] = ()
    managed: bool = False
    """Kafka by Strimzi and S3 by the operator's MinIO (upstream mode)."""

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.s3_service}.{self.s3_namespace}.svc:{S3_PORT}"

    @property
    def replay_endpoint(self) -> str:
        return f"ws://replay.{self.namespace}.svc:{REPLAY_PORT}/subscribe"

    @classmethod
    def managed_by_operator(cls, name: str, namespace_: str) -> Infra:
        """Kafka and S3 where the operator renders them for a StreamPulse ``name`` in
        ``namespace_`` with ``Managed`` modes. The toolbox runs beside the pipeline with its
        instance label: Strimzi's NetworkPolicy admits only the pipeline's pods to the brokers.
        The credentials Secret is the one the operator would generate; the test writes it first
        and the operator leaves an existing one as it is."""
        owner = Owner(name=name, namespace=namespace_, uid="system-test")
        spec = StreamPulseSpec()
        service = lakehouse.s3_endpoint(owner, spec).removeprefix("http://").split(".")[0]
        return cls(
            bootstrap_servers=kafka.bootstrap_servers(owner, spec),
            s3_namespace=namespace_,
            s3_service=service,
            credentials_secret=lakehouse.credentials_secret_name(owner, spec),
            toolbox_namespace=namespace_,
            toolbox_labels=((INSTANCE_LABEL, name),),
            managed=True,
        )


def namespace(name: str, *, restricted: bool = True) -> dict[str, Any]:
    labels = {APP_LABEL: "true"}
    if restricted:
        for mode in ("enforce", "audit", "warn"):
            labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def credentials(infra: Infra, namespace_: str) -> dict[str, Any]:
    """The lakehouse credentials Secret (keys ``accessKey``/``secretKey``, as the CRD expects)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": infra.credentials_secret, "namespace": namespace_},
        "stringData": {"accessKey": infra.access_key, "secretKey": infra.secret_key},
    }


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def _deployment(
    infra: Infra,
    name: str,
    container: dict[str, Any],
    volumes: tuple[str, ...] = ("tmp",),
    *,
    namespace_: str | None = None,
    extra_labels: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    container = {
        "name": name,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": kube.restricted_container(),
        "volumeMounts": [
            {"name": v, "mountPath": "/tmp" if v == "tmp" else f"/{v}"} for v in volumes
        ],
        **container,
    }
    labels = {"app": name, APP_LABEL: "true", **dict(extra_labels)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace_ or infra.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": kube.restricted_pod(),
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
                },
            },
        },
    }


def _service(infra: Infra, name: str, port: int, *, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": name},
        "ports": [{"name": "main", "port": port, "targetPort": port}],
    }
    if headless:  # clients reach the broker at the pod's own address, as it advertises it
        spec.update(clusterIP="None", publishNotReadyAddresses=True)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": infra.namespace, "labels": {APP_LABEL: "true"}},
        "spec": spec,
    }


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": key}}}


def _kafka_and_s3(infra: Infra, images: TestImages) -> list[dict[str, Any]]:
    """The broker and the S3 server of local mode, with their Services and credentials."""
    kafka_host = infra.bootstrap_servers.rsplit(":", 1)[0]
    kafka = _deployment(
        infra,
        "kafka",
        {
            "image": images.kafka,
            "args": [
                "--port",
                str(KAFKA_PORT),
                "--data-dir",
                "/data",
                "--bind-host",
                "0.0.0.0",
                "--advertised-host",
                kafka_host,
            ],
            "env": [{"name": "STREAMPULSE_LOCAL__KAFKA_HEAP_MB", "value": "384"}],
            "ports": [{"name": "kafka", "containerPort": KAFKA_PORT}],
            "readinessProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 2},
            "resources": _resources("50m", "512Mi", "1", "1Gi"),
        },
        volumes=("tmp", "data"),
    )
    s3 = _deployment(
        infra,
        S3_NAME,
        {
            "image": images.s3,
            "command": ["/bin/sh", "-c"],
            "args": [
                f"mkdir -p /data/{BUCKET} && exec /usr/local/bin/versitygw --port "
                f":{S3_PORT} --health /health --quiet posix /data"
            ],
            "env": [
                _secret_env("ROOT_ACCESS_KEY", "accessKey"),
                _secret_env("ROOT_SECRET_KEY", "secretKey"),
            ],
            "ports": [{"name": "s3", "containerPort": S3_PORT}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": S3_PORT}, "periodSeconds": 2},
            "resources": _resources("10m", "64Mi", "500m", "512Mi"),
        },
        volumes=("tmp", "data"),
    )
    return [
        credentials(infra, infra.namespace),
        kafka,
        _service(infra, "kafka", KAFKA_PORT, headless=True),
        s3,
        _service(infra, S3_NAME, S3_PORT),
    ]


def manifests(infra: Infra, images: TestImages, workers_image: str) -> list[dict[str, Any]]:
    replay = _deployment(
        infra,
        "replay",
        {
            "image": images.replay,
            # events in their time order, a few per fetch of the job's Kafka source (at full
            # speed one fetch holds the whole capture, and which minutes the job sees as late
            # would depend on how a throttled task manager splits it)
            "env": [{"name": "STREAMPULSE_REPLAY__RATE", "value": str(REPLAY_RATE)}],
            "ports": [{"name": "ws", "containerPort": REPLAY_PORT}],
            "readinessProbe": {"tcpSocket": {"port": REPLAY_PORT}, "periodSeconds": 2},
            "resources": _resources("10m", "128Mi", "500m", "512Mi"),
        },
    )
    toolbox = _deployment(
        infra,
        "toolbox",
        {
            "image": workers_image,
            "command": ["sleep", "infinity"],
            "resources": _resources("10m", "64Mi", "500m", "512Mi"),
        },
        namespace_=infra.toolbox_namespace,
        extra_labels=infra.toolbox_labels,
    )
    storage = [] if infra.managed else _kafka_and_s3(infra, images)
    return [
        namespace(infra.namespace),
        *storage,
        replay,
        _service(infra, "replay", REPLAY_PORT),
        toolbox,
    ]


def start(cluster: Cluster, infra: Infra, images: TestImages, workers_image: str) -> None:
    """Apply the infrastructure and wait until every pod of it is Ready. The replay has no
    replica yet: :func:`release_replay` starts it once the Flink job runs."""
    objects = manifests(infra, images, workers_image)
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "replay":
            obj["spec"]["replicas"] = 0
    kube.apply(cluster, *objects)
    kube.rollout(cluster, infra.toolbox_namespace, "deployment/toolbox", timeout_s=300)
    if not infra.managed:
        for name in ("kafka", S3_NAME):
            kube.rollout(cluster, infra.namespace, f"deployment/{name}", timeout_s=300)


def release_replay(cluster: Cluster, infra: Infra) -> None:
    """Start the replay: the ingest worker, retrying, connects and the capture flows."""
    cluster.kubectl("scale", "deployment/replay", "-n", infra.namespace, "--replicas=1")
    kube.rollout(cluster, infra.namespace, "deployment/replay", timeout_s=180)


def toolbox(cluster: Cluster, infra: Infra) -> str:
    return kube.ready_pod(cluster, infra.toolbox_namespace, "app=toolbox")
