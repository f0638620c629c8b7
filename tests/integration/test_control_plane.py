"""The real control plane the operator tests run against: built once, started on loopback.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok with fake nodes, the
upstream Strimzi, Flink and Prometheus-operator CRDs installed, and helm v4 next to it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kube import ApiError, ControlPlane, ensure_binaries, versions
from tests.harness.kube.process import wait_until

pytestmark = pytest.mark.integration

NAMESPACE = "default"
EXPECTED_CRDS = {
    "kafkas.kafka.strimzi.io",
    "kafkanodepools.kafka.strimzi.io",
    "kafkatopics.kafka.strimzi.io",
    "kafkausers.kafka.strimzi.io",
    "flinkdeployments.flink.apache.org",
    "flinksessionjobs.flink.apache.org",
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
}


def _crds_dir() -> Path:
    value = os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR")
    if not value:
        pytest.fail("STREAMPULSE_TEST_K8S_CRDS_DIR is not set (the Makefile exports it)")
    path = Path(value)
    if not path.is_dir() or not any(path.glob("*.yaml")):
        pytest.fail(f"STREAMPULSE_TEST_K8S_CRDS_DIR={path} holds no CRD manifests")
    return path


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    binaries = ensure_binaries()
    with ControlPlane(
        binaries, controllers=True, kwok_nodes=2, crds_dir=_crds_dir()
    ) as control_plane:
        print(f"control plane ready in {control_plane.startup_seconds:.1f}s")
        yield control_plane


def test_binaries_report_their_release(plane: ControlPlane) -> None:
    out = plane.run(str(plane.binaries.kube_apiserver), "--version")
    assert out.strip() == f"Kubernetes {versions.KUBERNETES}"
    discovered = plane.request("GET", "/version")
    assert discovered["gitVersion"] == versions.KUBERNETES
    assert (discovered["major"], discovered["minor"]) == ("1", versions.KUBERNETES.split(".")[1])
    etcd = plane.run(str(plane.binaries.etcd), "--version")
    assert f"etcd Version: {versions.ETCD.removeprefix('v')}" in etcd


def test_upstream_crds_are_established(plane: ControlPlane) -> None:
    assert set(plane.installed_crds) == EXPECTED_CRDS
    for name in EXPECTED_CRDS:
        assert plane.crd_established(name), name


def test_deployment_pods_run_on_kwok_nodes(plane: ControlPlane) -> None:
    name = "web"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example/web:1",
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "200m", "memory": "128Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }
    plane.request("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment)

    def running_pods() -> list[dict[str, Any]] | None:
        pods = plane.request(
            "GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{name}"
        )["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        return running if len(running) == 3 else None

    pods = wait_until(running_pods, timeout=90, what="3 Running pods", alive=plane.check_alive)
    assert {p["spec"]["nodeName"] for p in pods} <= set(plane.node_names)

    def available() -> dict[str, Any] | None:
        obj = plane.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
        conditions = obj.get("status", {}).get("conditions") or []
        ok = any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
        return obj if ok and obj["status"].get("availableReplicas") == 3 else None

    status = wait_until(available, timeout=90, what="Deployment Available")["status"]
    assert status["readyReplicas"] == 3

    # Garbage collection: deleting the Deployment removes its ReplicaSet and pods.
    plane.request(
        "DELETE",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
        {"propagationPolicy": "Foreground"},
    )
    wait_until(
        lambda: (
            not plane.request(
                "GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{name}"
            )["items"]
        ),
        timeout=90,
        what="pods to be garbage-collected",
    )


def test_strimzi_kafka_round_trips(plane: ControlPlane) -> None:
    kafka = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": {"name": "events", "namespace": NAMESPACE},
        "spec": {
            "kafka": {
                "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}],
                "config": {"offsets.topic.replication.factor": 1},
            },
            "entityOperator": {"topicOperator": {}},
        },
    }
    path = f"/apis/kafka.strimzi.io/v1/namespaces/{NAMESPACE}/kafkas"
    plane.request("POST", path, kafka)
    read = plane.request("GET", f"{path}/events")
    assert read["spec"]["kafka"]["listeners"][0]["name"] == "plain"
    assert read["metadata"]["uid"]
    listed = plane.kubectl_json("get", "kafkas.kafka.strimzi.io", "-n", NAMESPACE)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["events"]

    # The schema is enforced: an unknown listener type is rejected by the API server.
    bad = json.loads(json.dumps(kafka))
    bad["metadata"]["name"] = "broken"
    bad["spec"]["kafka"]["listeners"][0]["type"] = "carrier-pigeon"
    with pytest.raises(ApiError) as rejected:
        plane.request("POST", path, bad)
    assert rejected.value.status == 422
    assert "carrier-pigeon" in str(rejected.value)


def test_helm_is_v4(plane: ControlPlane) -> None:
    out = plane.helm("version", "--template", "{{ .Version }}")
    assert out.strip() == versions.HELM
    assert out.startswith("v4.")
    assert plane.helm("list", "--all-namespaces", "-o", "json").strip() == "[]"


def test_stop_leaves_nothing_behind() -> None:
    binaries = ensure_binaries()
    plane = ControlPlane(binaries, crds_dir=_crds_dir())
    started = time.monotonic()
    with plane:
        assert plane.request("GET", "/readyz") == "ok"
        directory, pids = plane.directory, plane.pids
        assert len(pids) == 2
    print(f"bare plane with CRDs: up and down in {time.monotonic() - started:.1f}s")
    assert not directory.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
