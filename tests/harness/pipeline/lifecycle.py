"""Suspension, resumption and deletion of the StreamPulse with real pods, and what is left."""

from __future__ import annotations

import json

from tests.harness.cluster import Cluster
from tests.harness.pipeline import kube
from tests.harness.pipeline.infra import APP_LABEL

INSTANCE = "streampulse.io/instance"
COMPONENT = "app.kubernetes.io/component"
STRIMZI_CLUSTER = "strimzi.io/cluster"
KINDS = (
    "deployments,replicasets,statefulsets,pods,services,configmaps,secrets,serviceaccounts,"
    "rolebindings,horizontalpodautoscalers,poddisruptionbudgets,networkpolicies,jobs,"
    "persistentvolumeclaims,flinkdeployments"
)
"""Every kind the operator renders in External mode, and what Flink's native mode creates."""
STRIMZI_KINDS = "kafkas,kafkanodepools,kafkatopics,strimzipodsets"
"""What Managed Kafka adds (upstream mode, where Strimzi's CRDs are installed)."""
STORAGE_COMPONENTS = frozenset({"kafka", "minio"})
"""Managed Kafka and MinIO keep running while a StreamPulse is suspended (their data stays
served; only the pipeline's compute stops)."""


def patch_suspend(cluster: Cluster, namespace: str, name: str, suspend: bool) -> None:
    body = json.dumps({"spec": {"suspend": suspend}})
    cluster.kubectl("patch", "streampulse", name, "-n", namespace, "--type=merge", "-p", body)


def _test_owned(obj: kube.Obj) -> bool:
    """The test's own toolbox, which runs beside the pipeline in upstream mode."""
    return APP_LABEL in (obj["metadata"].get("labels") or {})


def _storage(obj: kube.Obj) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return STRIMZI_CLUSTER in labels or labels.get(COMPONENT) in STORAGE_COMPONENTS


def pipeline_pods(cluster: Cluster, namespace: str, name: str) -> list[kube.Obj]:
    """The pods of one StreamPulse that suspension stops: its own children's and its Flink
    cluster's, terminating ones included (managed storage and the test's toolbox aside)."""
    return [
        pod
        for pod in kube.pods(cluster, namespace, f"{INSTANCE}={name}")
        if not _test_owned(pod) and not _storage(pod)
    ]


def kept_claims(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """The PersistentVolumeClaims deletion keeps on purpose: Strimzi's broker volumes
    (``deleteClaim: false``) and the managed MinIO's (a StatefulSet's claims outlive it)."""
    return sorted(
        f"PersistentVolumeClaim/{claim['metadata']['name']}"
        for claim in kube.items(cluster, "persistentvolumeclaims", "-n", namespace)
        if _storage(claim) and (claim["metadata"].get("labels") or {}).get(INSTANCE, name) == name
    )


def leftovers(
    cluster: Cluster, namespace: str, name: str, flink: str, *, managed: bool = False
) -> list[str]:
    """Objects of the StreamPulse (its label, or owned by it) and of its Flink cluster (Flink's
    ``app`` label, HA ConfigMaps included) still in the namespace; its PVCs too, except the
    ones :func:`kept_claims` names."""
    kinds = f"{KINDS},{STRIMZI_KINDS}" if managed else KINDS
    kept = set(kept_claims(cluster, namespace, name))
    out: list[str] = []
    for selector in (f"{INSTANCE}={name}", f"app={flink}"):
        for obj in kube.items(cluster, kinds, "-n", namespace, "-l", selector):
            if not _test_owned(obj):
                out.append(f"{obj['kind']}/{obj['metadata']['name']}")
    for obj in kube.items(cluster, kinds, "-n", namespace):
        owners = obj["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "StreamPulse" and o.get("name") == name for o in owners):
            out.append(f"{obj['kind']}/{obj['metadata']['name']}")
    for claim in kube.items(cluster, "persistentvolumeclaims", "-n", namespace):
        out.append(f"PersistentVolumeClaim/{claim['metadata']['name']}")
    return sorted(set(out) - kept)


def deployment_replicas(cluster: Cluster, namespace: str, name: str) -> tuple[int, int]:
    """(spec.replicas, readyReplicas) of a Deployment."""
    found = kube.get(cluster, "deployment", name, "-n", namespace) or {}
    return (
        int(found.get("spec", {}).get("replicas", 0)),
        int(found.get("status", {}).get("readyReplicas", 0)),
    )
