"""Trino over the lakehouse: a coordinator and workers sharing one ConfigMap, and the Iceberg REST
catalog they read the tables through.

The Flink job's Paimon tables publish Iceberg metadata beside the warehouse
(``<warehouse>/iceberg``, the layout of an Iceberg Hadoop catalog). Trino's own Iceberg connector
reads it through an Iceberg REST catalog: the project's read-only catalog server
(``streampulse.rest.TableCatalogServer``, shipped in the Trino image), which offers table reads and
nothing else. The catalog is ``lakehouse``, the same name and the same properties as a local
``streampulse local trino`` (docs/local.md, "SQL with Trino"); only the addresses and the way the
keys arrive differ. The S3 credentials reach both through environment variables
(``${ENV:...}`` in the catalog file for Trino), never through the ConfigMap.

The image (``operator/Dockerfile.trino``) is Trino 476 from Maven Central on Java 25 with the REST
catalog's jars; ``run-trino`` starts Trino's server from ``/etc/trino`` without Trino's Python
launcher.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.lakehouse import s3_credential_env, s3_endpoint
from streampulse_operator.spec import Owner, Resources, StreamPulseSpec

COMPONENT = "trino"
CATALOG_COMPONENT = "trino-catalog"
CATALOG = "lakehouse"  # the SQL catalog name: SELECT ... FROM lakehouse.streampulse.<table>
HTTP_PORT = 8080
REST_PORT = 8181
TRINO_UID = 1000  # the trino user of the image, as in Trino's official image
S3_REGION = "us-east-1"
REST_SERVER_CLASS = "streampulse.rest.TableCatalogServer"
REST_CLASSPATH = "/usr/lib/iceberg-rest/classes:/usr/lib/iceberg-rest/libs/*"
JVM_OPTIONS = (
    "-server",
    "-XX:MaxRAMPercentage=75",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:ReservedCodeCacheSize=256M",
    "-Djdk.attach.allowAttachSelf=true",
    "-XX:+EnableDynamicAgentLoading",
    "-Dfile.encoding=UTF-8",
    f"-Djava.io.tmpdir={c.SCRATCH_DIR}",
)


def lakehouse_catalog(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    """The ``lakehouse`` catalog's properties: Trino's Iceberg connector on the REST catalog,
    read-only, over S3 with the keys from the environment."""
    properties = {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": rest_catalog_url(owner),
        # Paimon owns the tables: Trino may read them, never write.
        "iceberg.security": "read_only",
        "fs.native-s3.enabled": "true",
        "s3.region": S3_REGION,
        "s3.path-style-access": "true",
        "s3.aws-access-key": "${ENV:S3_ACCESS_KEY}",
        "s3.aws-secret-key": "${ENV:S3_SECRET_KEY}",
    }
    if endpoint := s3_endpoint(owner, spec):  # none: AWS S3 itself
        properties["s3.endpoint"] = endpoint
    return properties


def rest_catalog_url(owner: Owner) -> str:
    return f"http://{c.child_name(owner, CATALOG_COMPONENT)}.{owner.namespace}.svc:{REST_PORT}"


def iceberg_warehouse(spec: StreamPulseSpec) -> str:
    """Where Paimon publishes the Iceberg metadata of the Flink job's warehouse."""
    return f"s3://{spec.lakehouse.bucket}/warehouse/iceberg"


def _properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


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
        f"{CATALOG}.properties": _properties(lakehouse_catalog(owner, spec)),
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
        *_rest_catalog(owner, spec),
        config_map,
        _deployment(owner, spec, "coordinator", replicas=1, config=coordinator, digest=digest),
        _service(owner, coordinator, COMPONENT, "trino-coordinator", HTTP_PORT),
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


def _service(owner: Owner, name: str, component: str, pods: str, port: int) -> c.Manifest:
    return c.obj(
        "v1",
        "Service",
        c.metadata(owner, name, component),
        spec={
            "selector": c.selector_labels(owner, pods),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    )


def rest_catalog_command(owner: Owner, spec: StreamPulseSpec) -> list[str]:
    """The REST catalog's command line: the warehouse's Iceberg metadata on S3, every interface."""
    command = [
        "java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp", REST_CLASSPATH, REST_SERVER_CLASS,
        "--warehouse", iceberg_warehouse(spec),
        "--bind", "0.0.0.0",  # noqa: S104 - reached by the Trino pods through its Service
        "--port", str(REST_PORT),
        "--s3-region", S3_REGION,
    ]  # fmt: skip
    if endpoint := s3_endpoint(owner, spec):
        command += ["--s3-endpoint", endpoint]
    return command


def _rest_catalog(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    name = c.child_name(owner, CATALOG_COMPONENT)
    container = c.container(
        "catalog",
        spec.trino.image,
        # its own size: the catalog serves metadata only, whatever Trino is given
        resources_=c.resources(Resources(), requests=("100m", "384Mi"), limits=("1", "512Mi")),
        command=rest_catalog_command(owner, spec),
        env=s3_credential_env(owner, spec, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ports=[{"name": "http", "containerPort": REST_PORT}],
        readinessProbe=c.http_probe("/v1/config", "http"),
    )
    deployment = c.obj(
        "apps/v1",
        "Deployment",
        c.metadata(owner, name, CATALOG_COMPONENT),
        spec={
            "replicas": 0 if spec.suspend else 1,
            "selector": {"matchLabels": c.selector_labels(owner, CATALOG_COMPONENT)},
            "template": {
                "metadata": {"labels": c.labels(owner, CATALOG_COMPONENT)},
                "spec": c.pod_spec([container], uid=TRINO_UID),
            },
        },
    )
    return [deployment, _service(owner, name, CATALOG_COMPONENT, CATALOG_COMPONENT, REST_PORT)]


def _deployment(
    owner: Owner, spec: StreamPulseSpec, role: str, *, replicas: int, config: str, digest: str
) -> c.Manifest:
    component = f"trino-{role}"
    items = [
        {"key": f"{role}.properties", "path": "config.properties"},
        {"key": "node.properties", "path": "node.properties"},
        {"key": "jvm.config", "path": "jvm.config"},
        {"key": f"{CATALOG}.properties", "path": f"catalog/{CATALOG}.properties"},
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
