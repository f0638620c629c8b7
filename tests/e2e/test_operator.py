"""The operator against a real control plane: helm install the chart, run the operator as a
process (as the chart's ServiceAccount), apply the example in a namespace that enforces Pod
Security ``restricted`` and follow it through readiness, spec changes, drift, the HPA hand-off,
suspend and deletion. Strimzi's and the Flink operator's status is patched the way those
operators write it (their controllers cannot run here); Deployments become available through
kube-controller-manager and kwok, so every pod the operator renders passes admission."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.operator_plane import (
    EXAMPLE,
    NS,
    SP,
    condition,
    make_lake_volume,
    running_plane,
    spec_change,
)
from tests.e2e.refusals import INVALID, REFUSED_CHANGES, REFUSED_IDS
from tests.harness.kube import ApiError, ControlPlane, StartupError, wait_until
from tests.harness.operator_runs import MERGE, OperatorRun, report_flink, report_ready

pytestmark = pytest.mark.e2e
APPS = f"/apis/apps/v1/namespaces/{NS}/deployments"
STRIMZI = f"/apis/kafka.strimzi.io/v1/namespaces/{NS}"
FLINK = f"/apis/flink.apache.org/v1beta1/namespaces/{NS}/flinkdeployments"


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with running_plane() as control_plane:
        yield control_plane


@pytest.fixture(scope="module")
def operator(plane: ControlPlane) -> Iterator[OperatorRun]:
    with OperatorRun(plane, "operator") as run:
        yield run


def new_resource(name: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": name}
    body["spec"].update(spec)
    return body


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_are_rejected_with_clear_messages(
    plane: ControlPlane, case: str, spec: dict[str, Any], message: str
) -> None:
    name = "bad-" + "x" * 26 if case.startswith("model name") else "bad"
    body = {
        "apiVersion": "streampulse.io/v1alpha1",
        "kind": "StreamPulse",
        "metadata": {"name": name},
        "spec": spec,
    }
    with pytest.raises(ApiError) as rejected:
        plane.request("POST", SP, body)
    assert rejected.value.status == 422, case
    assert message in str(rejected.value), str(rejected.value)


def test_names_that_would_not_fit_strimzis_pods_are_rejected(plane: ControlPlane) -> None:
    with pytest.raises(ApiError) as rejected:
        plane.request("POST", SP, new_resource("n" * 27))
    assert rejected.value.status == 422
    assert "must be at most 26 characters with kafka.mode Managed" in str(rejected.value)
    external = new_resource(
        "n" * 27, kafka={"mode": "External", "bootstrapServers": "kafka.example:9092"}
    )
    external["spec"]["models"] = [{"name": "ner", "task": "token_classification"}]
    plane.request("POST", SP, external)
    plane.request("DELETE", f"{SP}/{'n' * 27}")


@pytest.mark.parametrize(("change", "message"), REFUSED_CHANGES, ids=REFUSED_IDS)
def test_changes_kubernetes_or_the_engines_cannot_apply_are_refused(
    plane: ControlPlane, change: dict[str, Any], message: str
) -> None:
    plane.request("POST", SP, new_resource("immutable"))
    try:
        with pytest.raises(ApiError) as rejected:
            plane.request("PATCH", f"{SP}/immutable", {"spec": change}, content_type=MERGE)
        assert rejected.value.status == 422
        assert message in str(rejected.value), str(rejected.value)
        grown = {"kafka": {"storage": {"size": "40Gi"}}}
        plane.request("PATCH", f"{SP}/immutable", {"spec": grown}, content_type=MERGE)
    finally:
        plane.request("DELETE", f"{SP}/immutable")


def managed_replicas_fields(deployment: dict[str, Any], manager: str) -> bool:
    """Whether ``manager``'s server-side apply owns spec.replicas."""
    for entry in deployment["metadata"].get("managedFields") or []:
        if entry["manager"] == manager and entry["operation"] == "Apply":
            return "f:replicas" in (entry.get("fieldsV1", {}).get("f:spec") or {})
    return False


def test_the_example_runs_through_its_whole_life(
    plane: ControlPlane, operator: OperatorRun
) -> None:
    make_lake_volume(plane, "lake")
    body = new_resource("demo")
    body["metadata"]["name"] = "demo"
    body["spec"]["models"][0]["minReplicas"] = 2
    created = plane.request("POST", SP, body)
    uid = created["metadata"]["uid"]
    alive = operator.check_alive

    # Storage, Kafka and the models come first; the workers and Flink wait for Kafka.
    def first_children() -> list[dict[str, Any]] | None:
        found = [plane.get(f"{APPS}/demo-model-{m}") for m in ("toxicity", "ner", "sentiment")]
        found += [plane.get(f"{STRIMZI}/kafkas/demo")]
        return None if None in found else found

    for child in wait_until(first_children, timeout=60, what="the first children", alive=alive):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["kind"], ref["controller"]) == (uid, "StreamPulse", True)
    sp = wait_until(lambda: plane.get(f"{SP}/demo").get("status"), timeout=60, what="a status")
    assert condition({"status": sp}, "WorkersReady") == "False"
    workers = next(x for x in sp["conditions"] if x["type"] == "WorkersReady")
    assert workers["reason"] == "WaitingForDependencies"
    assert plane.get(f"{APPS}/demo-ingest") is None
    assert plane.get(f"{FLINK}/demo-flink") is None
    assert not plane.get(f"{SP}/demo")["metadata"].get("finalizers")

    # The HPA owns the model replicas: raised to minReplicas through /scale, never applied.
    toxicity = wait_until(
        lambda: (d := plane.get(f"{APPS}/demo-model-toxicity"))["spec"]["replicas"] == 2 and d,
        timeout=60,
        what="toxicity at its minimum of 2",
    )
    assert not managed_replicas_fields(toxicity, "streampulse-operator")

    # Strimzi reports Kafka ready: the workers and the Flink job are created.
    report_ready(plane, NS, "demo", flink=False)
    wait_until(
        lambda: plane.get(f"{APPS}/demo-ingest") and plane.get(f"{FLINK}/demo-flink"),
        timeout=60,
        what="workers and Flink after Kafka",
        alive=alive,
    )
    report_flink(plane, NS, "demo", "DEPLOYED", "RUNNING")
    sp = wait_until(
        lambda: (o := plane.get(f"{SP}/demo")) and condition(o, "KafkaReady") == "True" and o,
        timeout=60,
        what="KafkaReady",
        alive=alive,
    )
    assert condition(sp, "FlinkReady") == "False"  # deployed is not yet stable
    report_flink(plane, NS, "demo", "STABLE", "RUNNING")

    def streampulse_ready() -> dict[str, Any] | None:
        obj = plane.get(f"{SP}/demo")
        return obj if condition(obj, "Ready") == "True" else None

    obj = wait_until(streampulse_ready, timeout=120, what="StreamPulse Ready", alive=alive)
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["models"]["ready"] == "3/3"
    models_since = next(x for x in obj["status"]["conditions"] if x["type"] == "ModelsReady")
    table = plane.kubectl("get", "sp", "demo", "-n", NS)
    assert "Ready" in table
    assert "3/3" in table

    # The autoscaler raises toxicity to 3; a spec change keeps its count.
    plane.request(
        "PATCH",
        f"{APPS}/demo-model-toxicity/scale",
        {"spec": {"replicas": 3}},
        content_type=MERGE,
    )
    spec_change(plane, "demo", {"topics": {"raw": {"partitions": 12}}})
    wait_until(
        lambda: plane.get(f"{STRIMZI}/kafkatopics/demo-raw")["spec"]["partitions"] == 12,
        timeout=60,
        what="12 partitions",
    )
    # the topic's new generation is not ready until Strimzi has seen it
    wait_until(
        lambda: condition(plane.get(f"{SP}/demo"), "KafkaReady") == "False",
        timeout=60,
        what="KafkaReady False for the new generation",
    )
    report_ready(plane, NS, "demo", flink=False)
    wait_until(streampulse_ready, timeout=60, what="Ready again", alive=alive)
    assert plane.get(f"{APPS}/demo-model-toxicity")["spec"]["replicas"] == 3
    again = next(
        x for x in plane.get(f"{SP}/demo")["status"]["conditions"] if x["type"] == "ModelsReady"
    )
    # the models stayed ready while Kafka did not: their condition kept its transition time
    assert again["status"] == "True"
    assert again["lastTransitionTime"] == models_since["lastTransitionTime"]

    # A model dropped from the spec is pruned; maxReplicas reaches the HPA.
    spec_change(
        plane,
        "demo",
        {
            "models": [
                {
                    "name": "toxicity",
                    "task": "multi_label_classification",
                    "minReplicas": 2,
                    "maxReplicas": 6,
                }
            ]
        },
    )
    hpa = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/demo-model-toxicity"
    wait_until(lambda: plane.get(hpa)["spec"]["maxReplicas"] == 6, timeout=60, what="HPA max 6")
    wait_until(lambda: plane.get(f"{APPS}/demo-model-ner") is None, timeout=60, what="ner pruned")
    assert plane.get(f"{APPS}/demo-model-toxicity")["spec"]["replicas"] == 3

    # Drift: a deleted child comes back, an edited one is restored.
    plane.request("DELETE", f"{APPS}/demo-enrich")
    plane.request(
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/demo-ingest",
        {"data": {"STREAMPULSE_KAFKA__RAW_TOPIC": "hijacked"}},
        content_type=MERGE,
    )
    wait_until(
        lambda: (plane.get(f"{APPS}/demo-enrich") or {}).get("metadata", {}).get("uid"),
        timeout=60,
        what="enrich restored",
    )
    wait_until(
        lambda: (
            plane.get(f"/api/v1/namespaces/{NS}/configmaps/demo-ingest")["data"][
                "STREAMPULSE_KAFKA__RAW_TOPIC"
            ]
            == "bluesky.stream.raw"
        ),
        timeout=60,
        what="config restored",
    )

    # Suspend and resume: the autoscaler's count comes back.
    spec_change(plane, "demo", {"suspend": True})
    wait_until(
        lambda: plane.get(f"{FLINK}/demo-flink")["spec"]["job"]["state"] == "suspended",
        timeout=60,
        what="flink suspended",
    )
    wait_until(
        lambda: all(
            plane.get(f"{APPS}/{d}")["spec"]["replicas"] == 0
            for d in ("demo-ingest", "demo-enrich", "demo-model-toxicity")
        ),
        timeout=60,
        what="scaled to zero",
    )
    assert plane.get(hpa) is None
    report_flink(plane, NS, "demo", "SUSPENDED", "SUSPENDED")
    wait_until(
        lambda: plane.get(f"{SP}/demo")["status"]["phase"] == "Suspended",
        timeout=60,
        what="phase Suspended",
    )
    spec_change(plane, "demo", {"suspend": False})

    def resumed_state() -> tuple[int, str, int]:
        return (
            plane.get(f"{APPS}/demo-model-toxicity")["spec"]["replicas"],
            plane.get(f"{FLINK}/demo-flink")["spec"]["job"]["state"],
            plane.get(f"{APPS}/demo-ingest")["spec"]["replicas"],
        )

    try:
        wait_until(
            lambda: resumed_state() == (3, "running", 1),
            timeout=60,
            what="resumed with the autoscaler's 3 replicas",
        )
    except StartupError as exc:
        tail = operator.log.read_text(errors="replace")[-4000:]
        raise AssertionError(
            f"{exc}; (toxicity, flink, ingest) = {resumed_state()}; operator log:\n{tail}"
        ) from exc
    assert not managed_replicas_fields(
        plane.get(f"{APPS}/demo-model-toxicity"), "streampulse-operator"
    )

    # Deleting the StreamPulse garbage-collects everything.
    plane.request("DELETE", f"{SP}/demo", {"propagationPolicy": "Foreground"})
    wait_until(
        lambda: (
            plane.get(f"{APPS}/demo-ingest") is None
            and plane.get(f"{STRIMZI}/kafkas/demo") is None
            and plane.get(f"/api/v1/namespaces/{NS}/secrets/demo-minio-credentials") is None
        ),
        timeout=90,
        what="children garbage-collected",
    )
    log = operator.log.read_text(errors="replace")
    assert "forbidden" not in log.lower(), [
        line for line in log.splitlines() if "forbidden" in line.lower()
    ][:5]


def test_transitions_are_posted_as_events(plane: ControlPlane, operator: OperatorRun) -> None:
    """Self-contained: its own resource, from creation to Ready."""
    make_lake_volume(plane, "lake-events")
    plane.request("POST", SP, new_resource("events"))
    wait_until(
        lambda: plane.get(f"{STRIMZI}/kafkas/events"),
        timeout=60,
        what="the Kafka",
        alive=operator.check_alive,
    )
    report_ready(plane, NS, "events", flink=False)
    wait_until(lambda: plane.get(f"{FLINK}/events-flink"), timeout=60, what="the Flink job")
    report_flink(plane, NS, "events", "STABLE", "RUNNING")
    wait_until(
        lambda: condition(plane.get(f"{SP}/events"), "Ready") == "True",
        timeout=120,
        what="Ready",
        alive=operator.check_alive,
    )

    def reasons() -> set[str] | None:
        items = plane.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
        found = {
            e["reason"]
            for e in items
            if e["involvedObject"].get("kind") == "StreamPulse"
            and e["involvedObject"]["name"] == "events"
        }
        return found if {"Ready", "KafkaReady", "FlinkReady", "ModelsReady"} <= found else None

    wait_until(reasons, timeout=60, what="the transitions as Events")
    plane.request("DELETE", f"{SP}/events")
