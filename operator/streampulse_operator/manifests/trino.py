"""Trino over the Paimon tables: a coordinator and workers sharing one ConfigMap. The S3
credentials reach the catalog through environment variables (``${ENV:...}``), never the
ConfigMap.

Trino ships no Paimon connector: the image (``operator/Dockerfile.trino``) is Trino 440 with
Apache Paimon's Trino plugin, the one Trino version that plugin supports. The plugin reads the
warehouse through Trino's own file systems, so the catalog takes Trino 440's native S3 properties
(``s3.endpoint``, ``s3.aws-access-key``, ...), not Paimon's ``s3.access-key`` family. HDFS support
is off (``fs.hadoop.enabled=false``): Trino 440 enables it by default and then refuses a plugin
that bundles the HDFS classes, as Paimon's does."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.lakehouse import s3_credential_env, s3_endpoint
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "trino"
HTTP_PORT = 8080
TRINO_UID = 1000  # the trino user of the official image
JVM_OPTIONS = (
    "-server",
    "-XX:MaxRAMPercentage=75",
    "-XX:+ExitOnOutOfMemoryError",
    # what Paimon's Trino documentation asks for on Java 21 (the JDK of the Trino 440 image)
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
)


def _config(owner: Owner, spec: StreamPulseSpec, coordinator_url: str) -> dict[str, str]:
    include_coordinator = "true" if spec.trino.workers == 0 else "false"
    common = f"http-server.http.port={HTTP_PORT}\ndiscovery.uri={coordinator_url}\n"
    return {
        "coordinator.properties": (
            f"coordinator=true\nnode-scheduler.include-coordinator={include_coordinator}\n{common}"
        ),
        "worker.properties": f"coordinator=false\n{common}",
        "node.properties": "node.environment=streampulse\nnode.data-dir=/data/trino\n",
        "jvm.config": "".join(f"{option}\n" for option in JVM_OPTIONS),
        "paimon.properties": (
            "connector.name=paimon\n"
            f"warehouse=s3://{spec.lakehouse.bucket}/warehouse\n"
            "fs.hadoop.enabled=false\n"
            "fs.native-s3.enabled=true\n"
            f"s3.endpoint={s3_endpoint(owner, spec)}\n"
            "s3.path-style-access=true\n"
            "s3.region=us-east-1\n"
            "s3.aws-access-key=${ENV:S3_ACCESS_KEY}\n"
            "s3.aws-secret-key=${ENV:S3_SECRET_KEY}\n"
        ),
    }


def render_trino(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    if not spec.trino.enabled:
        return []
    coordinator = c.child_name(owner, "trino")
    url = f"http://{coordinator}.{owner.namespace}.svc:{HTTP_PORT}"
    data = _config(owner, spec, url)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    config_map = c.obj("v1", "ConfigMap", c.metadata(owner, coordinator, COMPONENT), data=data)
    out = [
        config_map,
        _deployment(owner, spec, "coordinator", replicas=1, config=coordinator, digest=digest),
        c.obj(
            "v1",
            "Service",
            c.metadata(owner, coordinator, COMPONENT),
            spec={
                "selector": c.selector_labels(owner, "trino-coordinator"),
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}],
            },
        ),
    ]
    if spec.trino.workers > 0:
        out.append(
            _deployment(
                owner,
                spec,
                "worker",
                replicas=spec.trino.workers,
                config=coordinator,
                digest=digest,
            )
        )
    return out


def _deployment(
    owner: Owner, spec: StreamPulseSpec, role: str, *, replicas: int, config: str, digest: str
) -> c.Manifest:
    component = f"trino-{role}"
    items = [
        {"key": f"{role}.properties", "path": "config.properties"},
        {"key": "node.properties", "path": "node.properties"},
        {"key": "jvm.config", "path": "jvm.config"},
        {"key": "paimon.properties", "path": "catalog/paimon.properties"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config, "items": items}},
        {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    container = c.container(
        "trino",
        spec.trino.image,
        resources_=c.resources(spec.trino.resources, requests=("500m", "2Gi"), limits=("2", "4Gi")),
        env=s3_credential_env(owner, spec, "S3_ACCESS_KEY", "S3_SECRET_KEY"),
        ports=[{"name": "http", "containerPort": HTTP_PORT}],
        mounts=[
            {"name": "config", "mountPath": "/etc/trino", "readOnly": True},
            {"name": "data", "mountPath": "/data/trino"},
        ],
        readinessProbe=c.http_probe("/v1/info", "http"),
    )
    replicas = 0 if spec.suspend else replicas
    return c.obj(
        "apps/v1",
        "Deployment",
        c.metadata(owner, c.child_name(owner, component), component),
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": c.selector_labels(owner, component)},
            "template": {
                "metadata": {
                    "labels": c.labels(owner, component),
                    "annotations": {f"{c.API_GROUP}/config-hash": digest},
                },
                "spec": c.pod_spec([container], volumes=volumes, uid=TRINO_UID),
            },
        },
    )
