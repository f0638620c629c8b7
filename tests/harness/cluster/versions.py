"""Versions of everything in the node image: the one place to change them (docs/cluster.md).

Kubernetes is the release the control-plane harness builds (``tests.harness.kube.versions``), so
the API server binaries are shared. The other pins are the newest releases on the Go module
proxy that build with Go 1.26.8 and still support cgroup v1 (deprecated, not removed, in
containerd 2.2+ and runc 1.4+). The image tags are those ``kubeadm`` v1.37 asks for.
"""

from __future__ import annotations

from tests.harness.kube import versions as kube_versions

KUBERNETES = kube_versions.KUBERNETES
"""kubelet, kubeadm, kube-proxy, kubectl (and the control plane, shared with tests.harness.kube)."""

ETCD = kube_versions.ETCD
CONTAINERD = "v2.4.2"
RUNC = "v1.5.3"
CNI_PLUGINS = "v1.9.1"
CRI_TOOLS = "v1.37.0"
COREDNS = "v1.14.6"
"""kubeadm v1.37's CoreDNSVersion."""
METRICS_SERVER = "v0.9.0"
"""v0.9.1 asks for Go >= 1.26.10."""
LOCAL_PATH_PROVISIONER = "v0.0.33"
"""The newest release whose module zip the proxy serves (v0.0.35's is refused)."""
KUBE_ROUTER = "v2.1.0"
"""The only kube-router/v2 release on the proxy; run as a NetworkPolicy firewall only."""
PAUSE = "3.10.2"
"""kubeadm v1.37's PauseVersion; the binary is built here from C."""

REGISTRY = "registry.k8s.io"


def etcd_image_tag() -> str:
    """etcd's image tag in kubeadm's style: v3.7.3 -> 3.7.3-0."""
    return f"{ETCD.removeprefix('v')}-0"


def image_tags() -> dict[str, str]:
    """The name each component image is tagged with (what kubeadm and the manifests use)."""
    return {
        "kube-apiserver": f"{REGISTRY}/kube-apiserver:{KUBERNETES}",
        "kube-controller-manager": f"{REGISTRY}/kube-controller-manager:{KUBERNETES}",
        "kube-scheduler": f"{REGISTRY}/kube-scheduler:{KUBERNETES}",
        "kube-proxy": f"{REGISTRY}/kube-proxy:{KUBERNETES}",
        "etcd": f"{REGISTRY}/etcd:{etcd_image_tag()}",
        "coredns": f"{REGISTRY}/coredns/coredns:{COREDNS}",
        "pause": f"{REGISTRY}/pause:{PAUSE}",
        "metrics-server": f"{REGISTRY}/metrics-server/metrics-server:{METRICS_SERVER}",
        "local-path-provisioner": (
            f"docker.io/rancher/local-path-provisioner:{LOCAL_PATH_PROVISIONER}"
        ),
        "kube-router": f"docker.io/cloudnativelabs/kube-router:{KUBE_ROUTER}",
    }


def all_versions() -> dict[str, str]:
    return {
        "kubernetes": KUBERNETES,
        "etcd": ETCD,
        "containerd": CONTAINERD,
        "runc": RUNC,
        "cni-plugins": CNI_PLUGINS,
        "cri-tools": CRI_TOOLS,
        "coredns": COREDNS,
        "metrics-server": METRICS_SERVER,
        "local-path-provisioner": LOCAL_PATH_PROVISIONER,
        "kube-router": KUBE_ROUTER,
        "pause": PAUSE,
    }
