"""The real single-node cluster does what the system tier relies on (docs/cluster.md).

A pod from a locally built image runs; a Service resolves through CoreDNS and answers another
pod; metrics-server serves `kubectl top`; a PVC binds through local-path; Pod Security
`restricted` refuses a privileged pod with 403 and admits a restricted one; NetworkPolicies are
enforced (kube-router). Uses the cluster `python -m tests.harness.cluster up` started, or starts
one and removes it afterwards.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster, ensure_base, ensure_engine
from tests.harness.cluster.bases import BASES
from tests.harness.cluster.cluster import wait_for
from tests.harness.cluster.manifests import STORAGE_CLASS

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

TEST_IMAGE = "streampulse-test/web:1"
PAGE = "streampulse-cluster-ok"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster.existing()
    if running is not None:
        yield running
        return
    started = Cluster.up()
    try:
        yield started
    finally:
        started.down()


@pytest.fixture(scope="module")
def web_image(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small web server image built here on the local Python base, loaded into the node."""
    engine = ensure_engine()
    base = ensure_base(engine, BASES["python"])
    context = tmp_path_factory.mktemp("web-image")
    (context / "index.html").write_text(PAGE + "\n")
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE=python:3.11-slim\n"
        "FROM ${BASE_IMAGE}\n"
        "COPY index.html /srv/index.html\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["python3", "-m", "http.server", "8080", "--directory", "/srv"]\n'
    )
    engine.docker("build", "--build-arg", f"BASE_IMAGE={base}", "-t", TEST_IMAGE, str(context))
    cluster.load_image(TEST_IMAGE)
    return TEST_IMAGE


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"sys-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def restricted_security() -> dict[str, object]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod(
    name: str,
    image: str,
    labels: dict[str, str] | None = None,
    command: list[str] | None = None,
    security: dict[str, object] | None = None,
    volumes: list[dict[str, object]] | None = None,
    mounts: list[dict[str, object]] | None = None,
) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "securityContext": security if security is not None else restricted_security(),
    }
    if command:
        container["command"] = command
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, object] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": spec,
    }


SLEEPER = ["python3", "-c", "import time; print('started', flush=True); time.sleep(3600)"]


def apply(cluster: Cluster, namespace: str, *objects: dict[str, object]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(doc))


def wait_running(cluster: Cluster, namespace: str, *names: str, timeout_s: float = 180) -> None:
    for name in names:

        def running(pod_name: str = name) -> bool:
            phase = cluster.kubectl(
                "-n", namespace, "get", "pod", pod_name, "-o", "jsonpath={.status.phase}"
            ).stdout
            if phase in ("Failed", "Succeeded"):
                raise AssertionError(f"pod {pod_name} ended: {phase}")
            return phase == "Running" and cluster.succeeds(
                "-n", namespace, "wait", "--for=condition=Ready", f"pod/{pod_name}", "--timeout=5s"
            )

        wait_for(running, timeout_s=timeout_s, what=f"pod {namespace}/{name} Running and Ready")


def fetch(cluster: Cluster, namespace: str, client: str, url: str) -> str | None:
    """GET ``url`` from inside the ``client`` pod: the body, or None when it cannot connect."""
    script = (
        "import sys, urllib.request\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=3).read().decode(), end='')\n"
        "except OSError as exc:\n"
        "    print('ERR', exc)\n"
    )
    out = cluster.kubectl("-n", namespace, "exec", client, "--", "python3", "-c", script).stdout
    return None if out.startswith("ERR") else out


def test_pod_from_local_image_runs(cluster: Cluster, namespace: str, web_image: str) -> None:
    apply(cluster, namespace, pod("hello", web_image, command=SLEEPER))
    wait_running(cluster, namespace, "hello")
    logs = wait_for(
        lambda: cluster.kubectl("-n", namespace, "logs", "hello").stdout,
        timeout_s=30,
        what="the pod's log",
    )
    assert "started" in logs
    image = cluster.kubectl(
        "-n",
        namespace,
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.containerStatuses[0].image}",
    ).stdout
    assert image.endswith(web_image)


def test_service_resolves_through_coredns(cluster: Cluster, namespace: str, web_image: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(
        cluster,
        namespace,
        pod("web", web_image),
        pod("client", web_image, command=SLEEPER),
        service,
    )
    wait_running(cluster, namespace, "web", "client")
    body = wait_for(
        lambda: fetch(cluster, namespace, "client", f"http://web.{namespace}.svc.cluster.local/"),
        timeout_s=60,
        what="the Service to answer by its DNS name",
    )
    assert body.strip() == PAGE
    # the short name through the pod's search path, as workloads use it
    assert (fetch(cluster, namespace, "client", "http://web/") or "").strip() == PAGE


def test_metrics_server_reports_pod_usage(cluster: Cluster, namespace: str, web_image: str) -> None:
    apply(cluster, namespace, pod("busy", web_image))
    wait_running(cluster, namespace, "busy")

    def usage() -> tuple[int, int] | None:
        out = cluster.kubectl("-n", namespace, "top", "pod", "busy", "--no-headers", check=False)
        match = re.match(r"busy\s+(\d+)m\s+(\d+)Mi", out.stdout.strip())
        return (int(match.group(1)), int(match.group(2))) if match else None

    cpu_millicores, memory_mib = wait_for(
        usage, timeout_s=240, what="kubectl top pod from metrics-server", every=5
    )
    assert cpu_millicores >= 0
    assert memory_mib > 0
    nodes = cluster.kubectl("top", "node", "--no-headers").stdout
    assert re.search(r"\d+m\s+\d+%\s+\d+Mi\s+\d+%", nodes), nodes


def test_pvc_binds_through_local_path(cluster: Cluster, namespace: str, web_image: str) -> None:
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    writer = pod(
        "writer",
        web_image,
        command=[
            "python3",
            "-c",
            "import pathlib, time; pathlib.Path('/data/proof').write_text('kept'); "
            "print('written', flush=True); time.sleep(3600)",
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        mounts=[{"name": "data", "mountPath": "/data"}],
    )
    writer["spec"]["securityContext"] = {"fsGroup": 10001}  # type: ignore[index]
    apply(cluster, namespace, pvc, writer)
    wait_running(cluster, namespace, "writer")
    claim = json.loads(cluster.kubectl("-n", namespace, "get", "pvc", "data", "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS
    volume = cluster.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout
    assert json.loads(volume)["spec"]["storageClassName"] == STORAGE_CLASS
    content = cluster.kubectl("-n", namespace, "exec", "writer", "--", "cat", "/data/proof").stdout
    assert content == "kept"


def test_pod_security_restricted_refuses_privileged(
    cluster: Cluster, namespace: str, web_image: str
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    privileged = pod("privileged", web_image, security={"privileged": True})
    status, body = cluster.api("POST", f"/api/v1/namespaces/{namespace}/pods", privileged)
    assert status == 403, body
    assert "violates PodSecurity" in body["message"]
    assert "restricted:latest" in body["message"]

    status, body = cluster.api(
        "POST", f"/api/v1/namespaces/{namespace}/pods", pod("restricted", web_image)
    )
    assert status == 201, body
    wait_running(cluster, namespace, "restricted")


def test_network_policy_is_enforced(cluster: Cluster, namespace: str, web_image: str) -> None:
    apply(
        cluster,
        namespace,
        pod("server", web_image, labels={"app": "server"}),
        pod("allowed", web_image, labels={"role": "allowed"}, command=SLEEPER),
        pod("other", web_image, labels={"role": "other"}, command=SLEEPER),
    )
    wait_running(cluster, namespace, "server", "allowed", "other")
    ip = cluster.kubectl(
        "-n", namespace, "get", "pod", "server", "-o", "jsonpath={.status.podIP}"
    ).stdout
    url = f"http://{ip}:8080/"
    for client in ("allowed", "other"):
        assert (
            wait_for(
                lambda c=client: fetch(cluster, namespace, c, url),
                timeout_s=30,
                what=f"{client} to reach the server before any policy",
            ).strip()
            == PAGE
        )

    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    apply(cluster, namespace, deny)
    for client in ("allowed", "other"):
        wait_for(
            lambda c=client: fetch(cluster, namespace, c, url) is None,
            timeout_s=60,
            what=f"the default-deny policy to block {client}",
        )

    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-role-allowed"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"role": "allowed"}}}],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                }
            ],
        },
    }
    apply(cluster, namespace, allow)
    body = wait_for(
        lambda: fetch(cluster, namespace, "allowed", url),
        timeout_s=60,
        what="the allow rule to let role=allowed through",
    )
    assert body.strip() == PAGE
    assert fetch(cluster, namespace, "other", url) is None


def test_kubeconfig_is_reachable_from_the_host(cluster: Cluster) -> None:
    assert cluster.server.startswith("https://127.0.0.1:")
    status, version = cluster.api("GET", "/version")
    assert status == 200
    assert version["gitVersion"] == "v1.37.2"
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["streampulse-control-plane"]
    assert not nodes[0]["spec"].get("taints")
    assert Path(cluster.kubeconfig).is_file()
