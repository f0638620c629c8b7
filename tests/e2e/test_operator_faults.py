"""The operator under faults and limits, against a real control plane: deleting a StreamPulse
while no operator runs, a watch connection that goes half-open, a CRD that is not installed,
and the chart's ServiceAccount asked what it may do."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.operator_plane import EXAMPLE, NS, SP, condition, running_plane, spec_change
from tests.harness.kube import ControlPlane, wait_until
from tests.harness.operator_runs import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    FreezingProxy,
    OperatorRun,
)

pytestmark = pytest.mark.e2e
APPS = f"/apis/apps/v1/namespaces/{NS}/deployments"
# External Kafka and S3: nothing to wait for but the workers and models themselves.
EXTERNAL: dict[str, Any] = {
    "kafka": {"mode": "External", "bootstrapServers": "kafka.example:9092"},
    "lakehouse": {
        "mode": "External",
        "endpoint": "https://s3.example",
        "credentialsSecretName": "lake",
    },
    "trino": {"enabled": False},
    "models": [{"name": "ner", "task": "token_classification"}],
}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with running_plane() as control_plane:
        yield control_plane


def external(name: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": name}
    body["spec"].update(copy.deepcopy(EXTERNAL), **spec)
    return body


def test_deleting_a_streampulse_needs_no_running_operator(plane: ControlPlane) -> None:
    with OperatorRun(plane, "operator-delete") as run:
        plane.request("POST", SP, external("orphan"))
        wait_until(
            lambda: plane.get(f"{APPS}/orphan-enrich"),
            timeout=60,
            what="the children",
            alive=run.check_alive,
        )
        assert not plane.get(f"{SP}/orphan")["metadata"].get("finalizers")
    # the operator is gone (as after `helm uninstall`, or while it restarts)
    plane.request("DELETE", f"{SP}/orphan")
    wait_until(lambda: plane.get(f"{SP}/orphan") is None, timeout=30, what="orphan deleted")
    wait_until(
        lambda: plane.get(f"{APPS}/orphan-enrich") is None,
        timeout=60,
        what="its children garbage-collected",
    )


def test_a_stuck_watch_fails_the_liveness_probe_until_it_is_replaced(plane: ControlPlane) -> None:
    port = urlsplit(plane.server).port
    assert port is not None
    proxy = FreezingProxy(port)
    settings = {
        "STREAMPULSE_OPERATOR_WATCH_STALL_S": "6",
        "STREAMPULSE_OPERATOR_WATCH_SERVER_TIMEOUT_S": "20",
        "STREAMPULSE_OPERATOR_API_TIMEOUT_S": "3",
    }
    try:
        with OperatorRun(
            plane, "operator-watch", server=proxy.server, health=True, settings=settings
        ) as run:
            plane.request("POST", SP, external("watched"))
            wait_until(
                lambda: (plane.get(f"{SP}/watched").get("status") or {}).get("observedGeneration"),
                timeout=60,
                what="a first status",
                alive=run.check_alive,
            )
            wait_until(lambda: run.healthz() == 200, timeout=60, what="healthy")
            assert proxy.freeze() > 0
            spec_change(plane, "watched", {"enrichment": {"batchSize": 32}})
            wait_until(
                lambda: run.healthz() == 500,
                timeout=90,
                what="the liveness probe to fail on the stuck watch",
                alive=run.check_alive,
            )
            # the watch ends at its client timeout and a new connection replaces it
            wait_until(
                lambda: run.healthz() == 200,
                timeout=120,
                what="healthy again on a new watch",
                alive=run.check_alive,
            )
            current = plane.get(f"{SP}/watched")
            assert current["status"]["observedGeneration"] == current["metadata"]["generation"]
            plane.request("DELETE", f"{SP}/watched")
    finally:
        proxy.close()


def test_a_missing_crd_is_reported_and_the_rest_runs(plane: ControlPlane) -> None:
    """The Gateway API is not installed here: the routes cannot be applied, the rest can."""
    with OperatorRun(plane, "operator-crd") as run:
        plane.request("POST", SP, external("routed", gateway={"gatewayName": "public"}))

        def reported() -> dict[str, Any] | None:
            obj = plane.get(f"{SP}/routed")
            models = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            return (
                obj if models.get("ModelsReady", {}).get("reason") == "DependencyMissing" else None
            )

        obj = wait_until(reported, timeout=60, what="DependencyMissing", alive=run.check_alive)
        models = next(c for c in obj["status"]["conditions"] if c["type"] == "ModelsReady")
        assert "gateway.networking.k8s.io/v1 HTTPRoute" in models["message"]
        wait_until(
            lambda: condition(plane.get(f"{SP}/routed"), "WorkersReady") == "True",
            timeout=60,
            what="the workers ready all the same",
        )
        assert plane.get(f"{APPS}/routed-model-ner") is not None
        plane.request("DELETE", f"{SP}/routed")


def can_i(plane: ControlPlane, *args: str) -> str:
    account = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
    try:
        return plane.kubectl("auth", "can-i", *args, f"--as={account}").strip()
    except Exception as exc:  # kubectl exits 1 on "no"
        return str(getattr(exc, "stdout", "") or exc).strip()


def test_the_operator_cannot_read_secrets(plane: ControlPlane) -> None:
    plane.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}},
    )
    assert can_i(plane, "get", "secret/database", "-n", "elsewhere") == "no"
    assert can_i(plane, "list", "secrets", "-n", "elsewhere") == "no"
    assert can_i(plane, "get", "secrets", "-n", NS) == "no"
    assert can_i(plane, "watch", "secrets", "-n", NS) == "no"
    assert can_i(plane, "create", "secrets", "-n", NS) == "yes"
    assert can_i(plane, "update", "streampulses", "--subresource=finalizers", "-n", NS) == "yes"
    assert can_i(plane, "bind", "clusterrole/streampulse-flink", "-n", NS) == "yes"
    assert can_i(plane, "bind", "clusterrole/cluster-admin", "-n", NS) == "no"
    assert can_i(plane, "create", "pods", "-n", NS) == "no"
