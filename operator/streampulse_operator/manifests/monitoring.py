"""Prometheus-operator monitors (when ``observability.serviceMonitors``): what Prometheus scrapes
for the Grafana dashboards the chart ships.

- one ServiceMonitor for every Service of the instance with a ``metrics`` port: the workers
  (through the metrics Services rendered here) and the model servers;
- a PodMonitor for the Flink job manager and task managers (Flink's Prometheus reporter);
- with managed Kafka, a PodMonitor for Strimzi's Kafka Exporter;
- with managed MinIO, a ServiceMonitor for its cluster metrics.

The gateway's metrics come from the ingress controller, which the cluster's owner installs and
scrapes (ingress-nginx: ``controller.metrics.enabled`` and its ServiceMonitor)."""

from __future__ import annotations

from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests import flink, kafka, lakehouse
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "monitoring"
MONITORING = "monitoring.coreos.com/v1"
INTERVAL = "30s"


def render_monitoring(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    observability = spec.observability
    if not (observability.metrics and observability.serviceMonitors):
        return []
    services = [
        c.obj(
            "v1",
            "Service",
            c.metadata(owner, c.child_name(owner, role, "metrics"), role),
            spec={
                "clusterIP": "None",
                "selector": c.selector_labels(owner, role),
                "ports": [{"name": "metrics", "port": c.METRICS_PORT, "targetPort": "metrics"}],
            },
        )
        for role in ("ingest", "enrich")
    ]
    monitors = [
        _monitor(
            owner,
            "ServiceMonitor",
            owner.name,
            {c.INSTANCE_LABEL: owner.name},
            {"port": "metrics", "path": "/metrics"},
        ),
        _monitor(
            owner,
            "PodMonitor",
            c.child_name(owner, flink.COMPONENT),
            c.selector_labels(owner, flink.COMPONENT),
            {"port": "metrics", "path": "/metrics"},
        ),
    ]
    if spec.kafka.mode == "Managed":
        selector = {kafka.CLUSTER_LABEL: owner.name, "strimzi.io/name": kafka.exporter_name(owner)}
        monitors.append(
            _monitor(
                owner,
                "PodMonitor",
                c.child_name(owner, "kafka-exporter"),
                selector,
                {"port": kafka.EXPORTER_METRICS_PORT, "path": "/metrics"},
            )
        )
    if spec.lakehouse.mode == "Managed":
        monitors.append(
            _monitor(
                owner,
                "ServiceMonitor",
                c.child_name(owner, lakehouse.COMPONENT),
                c.selector_labels(owner, lakehouse.COMPONENT),
                {"port": "s3", "path": lakehouse.METRICS_PATH},
            )
        )
    return [*services, *monitors]


def _monitor(
    owner: Owner, kind: str, name: str, selector: dict[str, str], endpoint: dict[str, Any]
) -> c.Manifest:
    endpoints = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    return c.obj(
        MONITORING,
        kind,
        c.metadata(owner, name, COMPONENT),
        spec={
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            endpoints: [{**endpoint, "interval": INTERVAL}],
        },
    )
