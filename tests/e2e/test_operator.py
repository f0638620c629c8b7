"""The operator against a real control plane: helm install the chart, run the operator as a
process, apply the example and follow it through readiness, spec changes, drift, suspend and
deletion. Strimzi's and the Flink operator's status is patched the way those operators write it;
Deployments become available through kube-controller-manager and kwok."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import ApiError, ControlPlane, ensure_binaries, wait_until

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streampulse-operator"
EXAMPLE = yaml.safe_load((CHART / "examples" / "streampulse.yaml").read_text())
NS = "default"
SP = f"/apis/streampulse.io/v1alpha1/namespaces/{NS}/streampulses"
MERGE = "application/merge-patch+json"


def _crds_dir() -> Path:
    value = os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail("STREAMPULSE_TEST_K8S_CRDS_DIR must name the upstream CRD directory")
    return Path(value)


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane(
        ensure_binaries(), controllers=True, kwok_nodes=2, crds_dir=_crds_dir()
    ) as control_plane:
        control_plane.helm(
            "install",
            "streampulse",
            str(CHART),
            "--namespace",
            "streampulse-system",
            "--create-namespace",
            "--wait=false",
        )
        wait_until(
            lambda: control_plane.crd_established("streampulses.streampulse.io"),
            timeout=60,
            what="the StreamPulse CRD",
        )
        yield control_plane


def service_account_kubeconfig(plane: ControlPlane) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount, so the operator runs with
    exactly the RBAC the chart grants (least privilege, checked by use)."""
    token = plane.kubectl(
        "create", "token", "streampulse", "-n", "streampulse-system", "--duration=2h"
    ).strip()
    config = json.loads(plane.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "operator"
    path = plane.directory / "operator-kubeconfig"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def operator(plane: ControlPlane) -> Iterator[subprocess.Popen[bytes]]:
    env = plane.env() | {
        "KUBECONFIG": str(service_account_kubeconfig(plane)),
        "STREAMPULSE_OPERATOR_HEALTH_PORT": "0",
        "STREAMPULSE_OPERATOR_RESYNC_INTERVAL_S": "2",
    }
    log = (plane.directory / "operator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streampulse_operator"], env=env, stdout=log, stderr=log
    )
    yield process
    process.terminate()
    process.wait(15)


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return str(item["status"])
    return None


INVALID = [
    (
        "models[0].maxReplicas",
        {
            "models": [
                {"name": "a", "task": "token_classification", "minReplicas": 5, "maxReplicas": 2}
            ]
        },
        "maxReplicas must be greater than or equal to minReplicas",
    ),
    ("task enum", {"models": [{"name": "a", "task": "summarize"}]}, "Unsupported value"),
    ("kafka mode", {"kafka": {"mode": "Cloud"}}, "Unsupported value"),
    ("external kafka", {"kafka": {"mode": "External"}}, "bootstrapServers is required"),
    (
        "external lakehouse",
        {"lakehouse": {"mode": "External"}},
        "credentialsSecretName are required",
    ),
    ("partitions", {"topics": {"raw": {"partitions": 0}}}, "should be greater than or equal to 1"),
    ("replicas vs brokers", {"topics": {"raw": {"replicas": 3}}}, "cannot exceed kafka.replicas"),
    ("endpoint scheme", {"source": {"endpoints": ["http://x/subscribe"]}}, "should match"),
    ("no endpoints", {"source": {"endpoints": []}}, "should have at least 1 items"),
    ("ingest replicas", {"ingestion": {"replicas": 2}}, "should be less than or equal to 1"),
    ("tls without host", {"gateway": {"tlsSecretName": "x"}}, "needs gateway.host"),
    (
        "monitors without metrics",
        {"observability": {"metrics": False, "serviceMonitors": True}},
        "needs observability.metrics",
    ),
    (
        "cpu target",
        {"models": [{"name": "a", "task": "token_classification", "targetCPUUtilization": 5}]},
        "greater than or equal to 10",
    ),
    (
        "duplicate model",
        {
            "models": [
                {"name": "a", "task": "token_classification"},
                {"name": "a", "task": "token_classification"},
            ]
        },
        "Duplicate value",
    ),
    ("flink version", {"flink": {"flinkVersion": "v1_9"}}, "Unsupported value"),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_are_rejected_with_clear_messages(
    plane: ControlPlane, case: str, spec: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": "streampulse.io/v1alpha1",
        "kind": "StreamPulse",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    with pytest.raises(ApiError) as rejected:
        plane.request("POST", SP, body)
    assert rejected.value.status == 422, case
    assert message in str(rejected.value), str(rejected.value)


def test_the_example_runs_through_its_whole_life(
    plane: ControlPlane, operator: subprocess.Popen[bytes]
) -> None:
    # MinIO's claim needs a volume: the plane has no provisioner.
    plane.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "lake"},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/var/lib/lake"},
            },
        },
    )
    created = plane.request("POST", SP, copy.deepcopy(EXAMPLE))
    uid = created["metadata"]["uid"]
    apps = f"/apis/apps/v1/namespaces/{NS}/deployments"
    strimzi = f"/apis/kafka.strimzi.io/v1/namespaces/{NS}"
    flink = f"/apis/flink.apache.org/v1beta1/namespaces/{NS}/flinkdeployments/demo-flink"

    def children() -> list[dict[str, Any]] | None:
        found = [plane.get(f"{apps}/demo-model-{m}") for m in ("toxicity", "ner", "sentiment")]
        found += [
            plane.get(f"{apps}/demo-ingest"),
            plane.get(f"{strimzi}/kafkas/demo"),
            plane.get(flink),
        ]
        return None if None in found else found

    for child in wait_until(
        children, timeout=30, what="the children", alive=operator_alive(operator)
    ):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["kind"], ref["controller"]) == (uid, "StreamPulse", True)

    sp = wait_until(lambda: plane.get(f"{SP}/demo").get("status"), timeout=30, what="a status")
    assert sp["phase"] in {"Pending", "Progressing"}
    assert condition({"status": sp}, "Ready") == "False"

    # The engines' own operators report ready.
    now = "2026-01-01T00:00:00Z"
    ready = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            "observedGeneration": 1,
        }
    }
    plane.request("PATCH", f"{strimzi}/kafkas/demo/status", ready, content_type=MERGE)
    for topic in ("raw", "enriched", "dlq"):
        plane.request(
            "PATCH", f"{strimzi}/kafkatopics/demo-{topic}/status", ready, content_type=MERGE
        )
    plane.request(
        "PATCH",
        f"{flink}/status",
        {"status": {"jobStatus": {"state": "RUNNING"}, "lifecycleState": "STABLE"}},
        content_type=MERGE,
    )

    def streampulse_ready() -> dict[str, Any] | None:
        obj = plane.get(f"{SP}/demo")
        return obj if condition(obj, "Ready") == "True" else None

    obj = wait_until(
        streampulse_ready, timeout=120, what="StreamPulse Ready", alive=operator_alive(operator)
    )
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["models"]["ready"] == "3/3"
    table = plane.kubectl("get", "sp", "demo", "-n", NS)
    assert "Ready" in table
    assert "3/3" in table

    # A spec change reaches the children.
    change = {
        "spec": {
            "topics": {"raw": {"partitions": 12}},
            "models": [
                {"name": "toxicity", "task": "multi_label_classification", "maxReplicas": 6}
            ],
        }
    }
    plane.request("PATCH", f"{SP}/demo", change, content_type=MERGE)
    hpa = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/demo-model-toxicity"
    wait_until(lambda: plane.get(hpa)["spec"]["maxReplicas"] == 6, timeout=30, what="HPA max 6")
    wait_until(
        lambda: plane.get(f"{strimzi}/kafkatopics/demo-raw")["spec"]["partitions"] == 12,
        timeout=30,
        what="12 partitions",
    )
    wait_until(lambda: plane.get(f"{apps}/demo-model-ner") is None, timeout=30, what="ner pruned")

    # Drift: a deleted child comes back, an edited one is restored.
    plane.request("DELETE", f"{apps}/demo-enrich")
    plane.request(
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/demo-ingest",
        {"data": {"STREAMPULSE_KAFKA__RAW_TOPIC": "hijacked"}},
        content_type=MERGE,
    )
    wait_until(
        lambda: (plane.get(f"{apps}/demo-enrich") or {}).get("metadata", {}).get("uid"),
        timeout=30,
        what="enrich restored",
    )
    wait_until(
        lambda: (
            plane.get(f"/api/v1/namespaces/{NS}/configmaps/demo-ingest")["data"][
                "STREAMPULSE_KAFKA__RAW_TOPIC"
            ]
            == "bluesky.stream.raw"
        ),
        timeout=30,
        what="config restored",
    )

    # Suspend and resume.
    plane.request("PATCH", f"{SP}/demo", {"spec": {"suspend": True}}, content_type=MERGE)
    wait_until(
        lambda: plane.get(flink)["spec"]["job"]["state"] == "suspended",
        timeout=30,
        what="flink suspended",
    )
    wait_until(
        lambda: all(
            plane.get(f"{apps}/{d}")["spec"]["replicas"] == 0
            for d in ("demo-ingest", "demo-enrich", "demo-model-toxicity")
        ),
        timeout=30,
        what="scaled to zero",
    )
    plane.request(
        "PATCH",
        f"{flink}/status",
        {"status": {"jobStatus": {"state": "SUSPENDED"}, "lifecycleState": "SUSPENDED"}},
        content_type=MERGE,
    )
    wait_until(
        lambda: plane.get(f"{SP}/demo")["status"]["phase"] == "Suspended",
        timeout=60,
        what="phase Suspended",
    )
    plane.request("PATCH", f"{SP}/demo", {"spec": {"suspend": False}}, content_type=MERGE)
    wait_until(
        lambda: (
            plane.get(f"{apps}/demo-model-toxicity")["spec"]["replicas"] == 1
            and plane.get(flink)["spec"]["job"]["state"] == "running"
        ),
        timeout=30,
        what="resumed",
    )

    # Deleting the StreamPulse garbage-collects everything.
    plane.request("DELETE", f"{SP}/demo", {"propagationPolicy": "Foreground"})
    wait_until(
        lambda: (
            plane.get(f"{apps}/demo-ingest") is None
            and plane.get(f"{strimzi}/kafkas/demo") is None
            and plane.get(f"/api/v1/namespaces/{NS}/secrets/demo-minio-credentials") is None
        ),
        timeout=90,
        what="children garbage-collected",
    )


def operator_alive(process: subprocess.Popen[bytes]) -> Any:
    def check() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with {process.returncode}")

    return check


def test_transitions_were_posted_as_events_and_rbac_sufficed(
    plane: ControlPlane, operator: subprocess.Popen[bytes]
) -> None:
    """Runs after the whole life above: its transitions are Events, and the operator (running as
    the chart's ServiceAccount) was never refused anything."""
    events = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    mine = [
        e
        for e in events
        if e["involvedObject"].get("kind") == "StreamPulse"
        and e["involvedObject"]["name"] == "demo"
    ]
    reasons = {e["reason"] for e in mine}
    assert {"Ready", "KafkaReady", "FlinkReady", "ModelsReady"} <= reasons, reasons
    log = (plane.directory / "operator.log").read_text(errors="replace")
    assert "forbidden" not in log.lower(), [
        line for line in log.splitlines() if "forbidden" in line.lower()
    ][:5]
