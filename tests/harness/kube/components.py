"""Command lines, kubeconfig and manifests of the control-plane components (pure functions)."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness.kube.build import Binaries
from tests.harness.kube.pki import Pki

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.1/16"
CONTEXT = "streampulse-test"


def etcd_argv(binaries: Binaries, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binaries.etcd),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync",  # throwaway data: durability buys nothing in tests
        "--log-level=warn",
    ]


def apiserver_argv(
    binaries: Binaries,
    pki: Pki,
    cert_dir: Path,
    *,
    etcd_port: int,
    port: int,
    service_account_admission: bool,
) -> list[str]:
    """``service_account_admission`` needs the controller-manager to create service accounts."""
    admission = [] if service_account_admission else ["--disable-admission-plugins=ServiceAccount"]
    return [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # The endpoint reconciler refuses loopback addresses, and nothing in-cluster is real.
        "--endpoint-reconciler-type=none",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.server_cert}",
        f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--profiling=false",
        *admission,
    ]


def _controller_common(kubeconfig: Path, port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
    ]


def controller_manager_argv(
    binaries: Binaries, pki: Pki, kubeconfig: Path, cert_dir: Path, port: int
) -> list[str]:
    return [
        str(binaries.kube_controller_manager),
        *_controller_common(kubeconfig, port),
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--cert-dir={cert_dir}",
        "--use-service-account-credentials=false",
    ]


def scheduler_argv(binaries: Binaries, kubeconfig: Path, port: int) -> list[str]:
    return [str(binaries.kube_scheduler), *_controller_common(kubeconfig, port)]


def kwok_argv(binaries: Binaries, kubeconfig: Path, port: int) -> list[str]:
    """kwok manages only nodes annotated ``kwok.x-k8s.io/node=fake`` and their pods."""
    return [
        str(binaries.kwok),
        f"--kubeconfig={kubeconfig}",
        f"--config={binaries.kwok_stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port}",
    ]


def kubeconfig(server: str, pki: Pki) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki.admin_cert),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin"}}],
        "current-context": CONTEXT,
    }


def kwok_node(name: str) -> dict[str, Any]:
    """A fake node kwok takes over: untainted, so ordinary workloads schedule onto it."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def condition_true(obj: Any, kind: str) -> bool:
    """Whether ``obj.status.conditions`` has ``kind`` with status "True"."""
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def http_ok(url: str, *, verify: bool = True) -> bool:
    """GET ``url``; True on 200. ``verify=False`` accepts the self-signed serving certificates
    kube-controller-manager and kube-scheduler generate for their health endpoints."""
    context = None
    if url.startswith("https") and not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return bool(response.status == 200)
