"""Readiness that means it: children count as ready only for their current generation and in the
state their controller calls ready; components are judged apart; missing CRDs and apply
failures have their own reasons; transitions keep their time; dependencies come first."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streampulse_operator.manifests import render
from streampulse_operator.reconciling import waiting_components
from streampulse_operator.status import Observation, child_state, key_of, summarize
from tests.unit.operator_unit.cases import OWNER, defaulted

pytestmark = pytest.mark.unit
SPEC = defaulted({})
MANIFESTS = render(OWNER, SPEC)
BY_KEY = {key_of(m): m for m in MANIFESTS}
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def ready_object(manifest: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    """A live child as its controller reports it when ready."""
    live = copy.deepcopy(manifest)
    live["metadata"]["generation"] = generation
    kind = manifest["kind"]
    replicas = manifest["spec"].get("replicas", 1) if kind in {"Deployment", "StatefulSet"} else 1
    status: dict[str, Any] = {"observedGeneration": generation}
    if kind in {"Kafka", "KafkaTopic"}:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    elif kind == "Deployment":
        live["spec"]["replicas"] = replicas
        status |= {"replicas": replicas, "availableReplicas": replicas}
        status["updatedReplicas"] = replicas
    elif kind == "StatefulSet":
        status |= {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
    elif kind == "Job":
        status["succeeded"] = 1
    elif kind == "FlinkDeployment":
        status |= {"lifecycleState": "STABLE", "jobStatus": {"state": "RUNNING"}}
    live["status"] = status
    return live


def all_ready() -> dict[str, dict[str, Any] | None]:
    return {key: ready_object(m) for key, m in BY_KEY.items()}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_everything_ready_is_ready() -> None:
    status = summarize(OWNER, SPEC, MANIFESTS, Observation(live=all_ready()), now=T0)
    assert status["phase"] == "Ready"
    assert all(c["status"] == "True" for c in status["conditions"])


def test_a_child_of_an_older_generation_is_not_ready() -> None:
    deployment = BY_KEY["Deployment/demo-ingest"]
    stale = ready_object(deployment, generation=2)
    stale["status"]["observedGeneration"] = 1
    assert not child_state(deployment, stale).ready
    kafka = BY_KEY["Kafka/demo"]
    stale_kafka = ready_object(kafka, generation=3)
    stale_kafka["status"]["observedGeneration"] = 2
    assert not child_state(kafka, stale_kafka).ready


def test_a_deployment_is_ready_only_when_its_updated_replicas_are_available() -> None:
    deployment = BY_KEY["Deployment/demo-enrich"]
    rolling = ready_object(deployment)
    rolling["status"]["updatedReplicas"] = 1  # two available, one of them the old version
    assert not child_state(deployment, rolling).ready


@pytest.mark.parametrize(
    ("lifecycle", "job", "ready"),
    [
        ("STABLE", "RUNNING", True),
        ("DEPLOYED", "RUNNING", False),  # not yet known to be stable
        ("STABLE", "RESTARTING", False),
        ("UPGRADING", "RUNNING", False),
        ("FAILED", "FAILED", False),
    ],
)
def test_a_flink_deployment_is_ready_when_stable_and_running(
    lifecycle: str, job: str, ready: bool
) -> None:
    manifest = BY_KEY["FlinkDeployment/demo-flink"]
    live = ready_object(manifest)
    live["status"] |= {"lifecycleState": lifecycle, "jobStatus": {"state": job}}
    assert child_state(manifest, live).ready is ready


def test_one_failing_child_does_not_blank_the_other_conditions() -> None:
    seen = Observation(
        live=all_ready(),
        apply_errors={"Deployment/demo-enrich": "applying Deployment/demo-enrich failed: quota"},
    )
    status = summarize(OWNER, SPEC, MANIFESTS, seen, now=T0)
    found = conditions(status)
    assert found["WorkersReady"]["status"] == "False"
    assert found["WorkersReady"]["reason"] == "ApplyFailed"
    assert "quota" in found["WorkersReady"]["message"]
    for name in ("KafkaReady", "LakehouseReady", "ModelsReady", "FlinkReady", "TrinoReady"):
        assert found[name]["status"] == "True", name
    assert found["Ready"]["status"] == "False"
    assert status["phase"] == "Failed"


def test_a_missing_upstream_crd_is_its_own_reason() -> None:
    live = all_ready()
    for key in [k for k in live if k.startswith(("Kafka", "KafkaTopic", "KafkaNodePool"))]:
        live[key] = None
    missing = {
        key_of(m): f"{m['apiVersion']} {m['kind']}"
        for m in MANIFESTS
        if m["apiVersion"].startswith("kafka.strimzi.io")
    }
    seen = Observation(live=live, missing_apis=missing)
    found = conditions(summarize(OWNER, SPEC, MANIFESTS, seen, now=T0))
    assert found["KafkaReady"]["reason"] == "DependencyMissing"
    assert "kafka.strimzi.io/v1 Kafka" in found["KafkaReady"]["message"]
    assert found["ModelsReady"]["status"] == "True"


def test_last_transition_time_moves_only_on_a_transition() -> None:
    first = summarize(OWNER, SPEC, MANIFESTS, Observation(live=all_ready()), now=T0)
    again = summarize(
        OWNER,
        SPEC,
        MANIFESTS,
        Observation(live=all_ready()),
        previous_conditions=first["conditions"],
        now=T1,
    )
    assert conditions(again)["Ready"]["lastTransitionTime"] == T0
    live = all_ready()
    live["Deployment/demo-ingest"] = None
    broken = summarize(
        OWNER,
        SPEC,
        MANIFESTS,
        Observation(live=live),
        previous_conditions=again["conditions"],
        now=T1,
    )
    assert conditions(broken)["WorkersReady"]["lastTransitionTime"] == T1
    assert conditions(broken)["KafkaReady"]["lastTransitionTime"] == T0
    # the reason or message changing without the status keeps the time
    other = summarize(
        OWNER,
        SPEC,
        MANIFESTS,
        Observation(live={**live, "Deployment/demo-enrich": None}),
        previous_conditions=broken["conditions"],
        now="2026-01-01T00:09:00Z",
    )
    assert conditions(other)["WorkersReady"]["lastTransitionTime"] == T1


def test_workers_flink_and_trino_wait_for_kafka_and_storage() -> None:
    nothing: dict[str, dict[str, Any] | None] = {}
    assert waiting_components(MANIFESTS, nothing) == {
        "Workers": ["KafkaReady"],
        "Flink": ["KafkaReady", "LakehouseReady"],
        "Trino": ["LakehouseReady"],
    }
    storage_only = {k: v for k, v in all_ready().items() if k.startswith(("StatefulSet", "Job"))}
    assert waiting_components(MANIFESTS, storage_only) == {
        "Workers": ["KafkaReady"],
        "Flink": ["KafkaReady"],
    }
    assert waiting_components(MANIFESTS, all_ready()) == {}


def test_running_components_are_not_held_back_when_kafka_wavers() -> None:
    live = all_ready()
    live["Kafka/demo"]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert waiting_components(MANIFESTS, live) == {}


def test_waiting_components_are_reported_as_such() -> None:
    seen = Observation(live={}, waiting={"Workers": ["KafkaReady"]})
    found = conditions(summarize(OWNER, SPEC, MANIFESTS, seen, now=T0))
    assert found["WorkersReady"]["reason"] == "WaitingForDependencies"
    assert found["WorkersReady"]["message"] == "waiting for KafkaReady"
