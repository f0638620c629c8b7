"""Every kind of child the operator applies, observes and prunes, in one table. The chart's RBAC
grants exactly these (a unit test keeps the two in step).

Secrets are the exception: the operator creates the managed MinIO's credentials once and never
reads, lists or deletes a Secret (it has ``create`` on Secrets and nothing else), so it cannot
read credentials it did not create. The credentials Secret is garbage-collected with its
StreamPulse through its owner reference."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource


@dataclass(frozen=True)
class ChildKind:
    group: str
    version: str
    kind: str
    plural: str
    listed: bool = True  # listed (observed and pruned) by label; False: create-only

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CHILD_KINDS = (
    ChildKind("", "v1", "ConfigMap", "configmaps"),
    ChildKind("", "v1", "Secret", "secrets", listed=False),
    ChildKind("", "v1", "Service", "services"),
    ChildKind("", "v1", "ServiceAccount", "serviceaccounts"),
    ChildKind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    ChildKind("apps", "v1", "Deployment", "deployments"),
    ChildKind("apps", "v1", "StatefulSet", "statefulsets"),
    ChildKind("batch", "v1", "Job", "jobs"),
    ChildKind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ChildKind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ChildKind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    ChildKind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ChildKind("kafka.strimzi.io", "v1", "Kafka", "kafkas"),
    ChildKind("kafka.strimzi.io", "v1", "KafkaNodePool", "kafkanodepools"),
    ChildKind("kafka.strimzi.io", "v1", "KafkaTopic", "kafkatopics"),
    ChildKind("flink.apache.org", "v1beta1", "FlinkDeployment", "flinkdeployments"),
    ChildKind("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
    ChildKind("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors"),
)
LISTED_KINDS = tuple(kind for kind in CHILD_KINDS if kind.listed)
STREAMPULSE = ChildKind("streampulse.io", "v1alpha1", "StreamPulse", "streampulses")
_BY_KIND = {(k.api_version, k.kind): k for k in CHILD_KINDS}


def child_kind(api_version: str, kind: str) -> ChildKind:
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f"{api_version} {kind} is not a kind the operator manages") from None


@cache
def resource_class(kind: ChildKind) -> type[GenericNamespacedResource]:
    """lightkube's generic resource class for a kind: the operator handles every object as a
    plain dict, so typed models are never loaded (that keeps the process small)."""
    return create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
