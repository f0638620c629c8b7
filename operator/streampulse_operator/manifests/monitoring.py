"""Prometheus-operator ServiceMonitors (when ``observability.serviceMonitors``): one monitor
scraping every Service of the instance that has a ``metrics`` port, plus metrics Services for
the workers (the model Services already expose the port)."""

from __future__ import annotations

from streampulse_operator.manifests import common as c
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "monitoring"


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
    monitor = c.obj(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        c.metadata(owner, owner.name, COMPONENT),
        spec={
            "selector": {"matchLabels": {c.INSTANCE_LABEL: owner.name}},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        },
    )
    return [*services, monitor]
