"""NetworkPolicies around the pipeline (``networkPolicies.enabled``).

- The model servers accept their API port from the enrich worker and, when routes are published,
  from the Gateway's namespace (its data plane), and their metrics port from Prometheus.
- The managed MinIO accepts its S3 port from this pipeline's pods only (the Flink job, Trino,
  the bucket Job) and from Prometheus (its metrics are on the same port).
- The Iceberg REST catalog accepts its port from the Trino coordinator and workers only.
- Kafka: Strimzi renders the broker's policies from each listener's ``networkPolicyPeers``
  (``manifests/kafka.py``): this pipeline's pods, and Strimzi's own components.

Probes come from the node, which NetworkPolicies do not restrict. The policies take effect where
the cluster's network plugin enforces them."""

from __future__ import annotations

from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.lakehouse import API_PORT
from streampulse_operator.manifests.lakehouse import COMPONENT as MINIO
from streampulse_operator.manifests.models import model_component
from streampulse_operator.manifests.trino import CATALOG_COMPONENT, REST_PORT
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "network"
NAMESPACE_NAME = "kubernetes.io/metadata.name"


def prometheus_peer(spec: StreamPulseSpec) -> dict[str, Any]:
    policies = spec.networkPolicies
    namespaces: dict[str, Any] = {}
    if policies.prometheusNamespace:
        namespaces = {"matchLabels": {NAMESPACE_NAME: policies.prometheusNamespace}}
    return {
        "namespaceSelector": namespaces,
        "podSelector": {"matchLabels": dict(policies.prometheusPodLabels)},
    }


def _policy(
    owner: Owner, name: str, pods: dict[str, Any], ingress: list[dict[str, Any]]
) -> c.Manifest:
    return c.obj(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        c.metadata(owner, name, COMPONENT),
        spec={"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress},
    )


def _models(owner: Owner, spec: StreamPulseSpec) -> c.Manifest:
    enrich = {"podSelector": {"matchLabels": c.selector_labels(owner, "enrich")}}
    api_peers: list[dict[str, Any]] = [enrich]
    if spec.gateway.gatewayName:
        namespace = spec.gateway.gatewayNamespace or owner.namespace
        api_peers.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: namespace}}})
    ingress: list[dict[str, Any]] = [
        {"from": api_peers, "ports": [{"protocol": "TCP", "port": c.MODEL_PORT}]}
    ]
    if spec.observability.metrics:
        ingress.append(
            {
                "from": [prometheus_peer(spec)],
                "ports": [{"protocol": "TCP", "port": c.METRICS_PORT}],
            }
        )
    pods = {
        "matchLabels": {c.INSTANCE_LABEL: owner.name},
        "matchExpressions": [
            {
                "key": c.COMPONENT_LABEL,
                "operator": "In",
                "values": sorted(model_component(m) for m in spec.models),
            }
        ],
    }
    return _policy(owner, c.child_name(owner, "models"), pods, ingress)


def _minio(owner: Owner, spec: StreamPulseSpec) -> c.Manifest:
    pipeline = {"podSelector": {"matchLabels": {c.INSTANCE_LABEL: owner.name}}}
    peers: list[dict[str, Any]] = [pipeline]
    if spec.observability.metrics:
        peers.append(prometheus_peer(spec))
    ingress = [{"from": peers, "ports": [{"protocol": "TCP", "port": API_PORT}]}]
    pods = {"matchLabels": c.selector_labels(owner, MINIO)}
    return _policy(owner, c.child_name(owner, MINIO), pods, ingress)


def _trino_catalog(owner: Owner) -> c.Manifest:
    """The Iceberg REST catalog answers Trino's pods only."""
    trino = {
        "podSelector": {
            "matchLabels": {c.INSTANCE_LABEL: owner.name},
            "matchExpressions": [
                {
                    "key": c.COMPONENT_LABEL,
                    "operator": "In",
                    "values": ["trino-coordinator", "trino-worker"],
                }
            ],
        }
    }
    ingress = [{"from": [trino], "ports": [{"protocol": "TCP", "port": REST_PORT}]}]
    pods = {"matchLabels": c.selector_labels(owner, CATALOG_COMPONENT)}
    return _policy(owner, c.child_name(owner, CATALOG_COMPONENT), pods, ingress)


def render_network(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    if not spec.networkPolicies.enabled:
        return []
    out = []
    if spec.models:
        out.append(_models(owner, spec))
    if spec.lakehouse.mode == "Managed":
        out.append(_minio(owner, spec))
    if spec.trino.enabled:
        out.append(_trino_catalog(owner))
    return out
