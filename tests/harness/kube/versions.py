"""Versions of the control-plane components the test harness builds: the one place to change them.

Kubernetes is the newest release whose modules resolve with the Go toolchain of this repository
(Go 1.26); etcd is the newest patch of the minor that release's go.mod depends on.
"""

from __future__ import annotations

KUBERNETES = "v1.37.2"
"""k8s.io/kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler."""

ETCD = "v3.7.3"
"""go.etcd.io/etcd/server/v3 (Kubernetes v1.37 requires the v3.7 etcd client)."""

KWOK = "v0.8.0"
"""sigs.k8s.io/kwok: fake nodes and pod lifecycles without a kubelet."""

HELM = "v4.3.1"
"""helm.sh/helm/v4."""

GATEWAY_API = "v1.6.3"
"""sigs.k8s.io/gateway-api: the CRDs of the HTTPRoutes the operator renders (v1.7.0 needs a newer
Go than this repository's)."""


def staging_version(kubernetes: str = KUBERNETES) -> str:
    """The published staging-module version of a release: v1.37.2 -> v0.37.2."""
    major, minor, patch = kubernetes.removeprefix("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes}")
    return f"v0.{minor}.{patch}"


def all_versions() -> dict[str, str]:
    """Every pinned version, as recorded in the build stamp."""
    return {"kubernetes": KUBERNETES, "etcd": ETCD, "kwok": KWOK, "helm": HELM}
