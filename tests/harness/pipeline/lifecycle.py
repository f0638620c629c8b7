"""Suspension, resumption and deletion of the StreamPulse with real pods, and what is left."""

from __future__ import annotations

import json

from tests.harness.cluster import Cluster
from tests.harness.pipeline import kube

INSTANCE = "streampulse.io/instance"
KINDS = (
    "deployments,replicasets,statefulsets,pods,services,configmaps,secrets,serviceaccounts,"
    "rolebindings,horizontalpodautoscalers,poddisruptionbudgets,networkpolicies,jobs,"
    "persistentvolumeclaims,flinkdeployments"
)
"""Every kind the operator renders in External mode, and what Flink's native mode creates."""


def patch_suspend(cluster: Cluster, namespace: str, name: str, suspend: bool) -> None:
    body = json.dumps({"spec": {"suspend": suspend}})
    cluster.kubectl("patch", "streampulse", name, "-n", namespace, "--type=merge", "-p", body)


def pipeline_pods(cluster: Cluster, namespace: str, name: str) -> list[kube.Obj]:
    """The pods of one StreamPulse, its own children's and its Flink cluster's, terminating
    ones included."""
    return kube.pods(cluster, namespace, f"{INSTANCE}={name}")


def leftovers(cluster: Cluster, namespace: str, name: str, flink: str) -> list[str]:
    """Objects of the StreamPulse (its label, or owned by it) and of its Flink cluster (Flink's
    ``app`` label, HA ConfigMaps included) still in the namespace; PVCs of the namespace too."""
    out: list[str] = []
    for selector in (f"{INSTANCE}={name}", f"app={flink}"):
        for obj in kube.items(cluster, KINDS, "-n", namespace, "-l", selector):
            out.append(f"{obj['kind']}/{obj['metadata']['name']}")
    for obj in kube.items(cluster, KINDS, "-n", namespace):
        owners = obj["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "StreamPulse" and o.get("name") == name for o in owners):
            out.append(f"{obj['kind']}/{obj['metadata']['name']}")
    for claim in kube.items(cluster, "persistentvolumeclaims", "-n", namespace):
        out.append(f"PersistentVolumeClaim/{claim['metadata']['name']}")
    return sorted(set(out))


def deployment_replicas(cluster: Cluster, namespace: str, name: str) -> tuple[int, int]:
    """(spec.replicas, readyReplicas) of a Deployment."""
    found = kube.get(cluster, "deployment", name, "-n", namespace) or {}
    return (
        int(found.get("spec", {}).get("replicas", 0)),
        int(found.get("status", {}).get("readyReplicas", 0)),
    )
