"""Status from the children's real state: pure functions from what was observed to the
StreamPulse ``status`` (observedGeneration, phase, one condition per component plus Ready,
per-component detail and endpoints).

A child counts as ready only when its own controller has seen its current spec (its
``status.observedGeneration`` reaches its ``metadata.generation``) and reports it ready. Each
component's condition is computed on its own, so one failing child never blanks the others':

- ``DependencyMissing``: the API server does not serve a kind the component needs (Strimzi, the
  Flink operator, the Gateway API or the Prometheus operator is not installed);
- ``ApplyFailed``: a child could not be applied (the message says which and why);
- ``WaitingForDependencies``: the component waits for the ones it depends on (``DEPENDS_ON``)
  before its children are first created;
- ``Ready`` / ``Waiting`` / ``Suspended`` / ``Suspending`` from the children's state.

``lastTransitionTime`` moves only when a condition's status changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.kafka import bootstrap_servers
from streampulse_operator.manifests.lakehouse import s3_endpoint
from streampulse_operator.manifests.models import predict_path
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENTS = ("Kafka", "Lakehouse", "Models", "Workers", "Flink", "Trino")
# A component's children are first created once the components it depends on are ready: the
# workers need Kafka, the Flink job Kafka and the lakehouse, Trino the lakehouse.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "Workers": ("Kafka",),
    "Flink": ("Kafka", "Lakehouse"),
    "Trino": ("Lakehouse",),
}
READINESS_KINDS = frozenset(
    {"Kafka", "KafkaTopic", "Deployment", "StatefulSet", "Job", "FlinkDeployment"}
)
# Kinds whose controllers report the generation they have seen (a Job's spec is immutable).
GENERATION_KINDS = READINESS_KINDS - {"Job"}


def key_of(manifest: Mapping[str, Any]) -> str:
    """``Kind/name``: how observed children are keyed."""
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def component_of(manifest: Mapping[str, Any]) -> str:
    label = str(manifest["metadata"]["labels"][c.COMPONENT_LABEL])
    if label.startswith("model-"):
        return "Models"
    if label.startswith("trino"):
        return "Trino"
    return {
        "kafka": "Kafka",
        "minio": "Lakehouse",
        "bucket": "Lakehouse",
        "ingest": "Workers",
        "enrich": "Workers",
        "flink": "Flink",
    }.get(label, "")


@dataclass(frozen=True)
class ChildState:
    ready: bool
    message: str


@dataclass
class Observation:
    """What one reconcile saw and did, beside the live children."""

    live: Mapping[str, Mapping[str, Any] | None]
    apply_errors: Mapping[str, str] = field(default_factory=dict)  # key -> message
    missing_apis: Mapping[str, str] = field(default_factory=dict)  # key -> "group/version kind"
    waiting: Mapping[str, Sequence[str]] = field(default_factory=dict)  # component -> deps


def _condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(x.get("type") == kind and x.get("status") == "True" for x in conditions)


def _current(live: Mapping[str, Any]) -> bool:
    """Whether the child's controller has seen its current spec."""
    observed = (live.get("status") or {}).get("observedGeneration")
    generation = live.get("metadata", {}).get("generation")
    return generation is None or (observed is not None and int(observed) >= int(generation))


def _workload_state(key: str, kind: str, live: Mapping[str, Any]) -> ChildState:
    status = live.get("status") or {}
    want = int(live.get("spec", {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    if kind == "Deployment":
        have = int(status.get("availableReplicas", 0))
        pods = int(status.get("replicas", 0))
    else:
        have = int(status.get("readyReplicas", 0))
        pods = int(status.get("currentReplicas", status.get("replicas", 0)))
    if want == 0:
        return ChildState(pods == 0, f"{key}: {pods} pods left")
    ready = have >= want and updated >= want
    return ChildState(ready, f"{key}: {have}/{want} available, {updated} updated")


def child_state(  # noqa: PLR0911 - one answer per kind of child
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None
) -> ChildState:
    """Whether one child is ready, from the state its own controller reports."""
    key = key_of(manifest)
    if live is None:
        return ChildState(False, f"{key} does not exist yet")
    if manifest["kind"] in GENERATION_KINDS and not _current(live):
        return ChildState(False, f"{key}: its controller has not seen the current spec yet")
    kind, status = manifest["kind"], live.get("status") or {}
    if kind in {"Kafka", "KafkaTopic"}:
        ready = _condition_true(live, "Ready")
        return ChildState(ready, f"{key} is {'Ready' if ready else 'not Ready'}")
    if kind in {"Deployment", "StatefulSet"}:
        return _workload_state(key, kind, live)
    if kind == "Job":
        done = int(status.get("succeeded", 0)) >= 1
        return ChildState(done, f"{key} {'complete' if done else 'running'}")
    if kind == "FlinkDeployment":
        lifecycle = str(status.get("lifecycleState") or "UNKNOWN")
        job = str((status.get("jobStatus") or {}).get("state") or "UNKNOWN")
        if manifest["spec"]["job"]["state"] == "running":
            ready = lifecycle == "STABLE" and job == "RUNNING"
        else:
            ready = lifecycle == "SUSPENDED"
        return ChildState(ready, f"{key}: {lifecycle}, job {job}")
    return ChildState(True, f"{key} exists")


def _condition(
    kind: str,
    ready: bool,
    *,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    status = "True" if ready else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != status
    since = now if before is None or changed else before["lastTransitionTime"]
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def _component(  # noqa: PLR0911 - one answer per reason
    name: str,
    keys: Sequence[str],
    states: Sequence[ChildState],
    spec: StreamPulseSpec,
    seen: Observation,
) -> tuple[bool, str, str]:
    """(ready, reason, message) of one component."""
    missing = sorted({seen.missing_apis[k] for k in keys if k in seen.missing_apis})
    if missing:
        return False, "DependencyMissing", f"the API server does not serve {', '.join(missing)}"
    failed = [seen.apply_errors[k] for k in keys if k in seen.apply_errors]
    if failed:
        return False, "ApplyFailed", "; ".join(failed[:3])
    if name in seen.waiting:
        return False, "WaitingForDependencies", "waiting for " + ", ".join(seen.waiting[name])
    waiting = [s.message for s in states if not s.ready]
    if not states:
        return True, _absent_reason(name, spec), "nothing to run"
    if spec.suspend and name in {"Models", "Workers", "Flink", "Trino"}:
        return (
            (True, "Suspended", "suspended") if not waiting else (False, "Suspending", waiting[0])
        )
    if waiting:
        return False, "Waiting", "; ".join(waiting[:3])
    return True, "Ready", f"{len(states)} ready"


def summarize(
    owner: Owner,
    spec: StreamPulseSpec,
    manifests: Sequence[Mapping[str, Any]],
    seen: Observation,
    *,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
    now: str,
) -> dict[str, Any]:
    """The whole ``status`` for one StreamPulse."""
    previous = {str(x["type"]): x for x in previous_conditions if "lastTransitionTime" in x}
    keys: dict[str, list[str]] = {name: [] for name in COMPONENTS}
    states: dict[str, list[ChildState]] = {name: [] for name in COMPONENTS}
    models_ready = 0
    for manifest in manifests:
        component = component_of(manifest)
        if not component:
            continue
        key = key_of(manifest)
        keys[component].append(key)
        if manifest["kind"] not in READINESS_KINDS:
            continue
        state = child_state(manifest, seen.live.get(key))
        states[component].append(state)
        if component == "Models" and manifest["kind"] == "Deployment" and state.ready:
            models_ready += 1
    conditions, details = [], {}
    for name in COMPONENTS:
        ready, reason, message = _component(name, keys[name], states[name], spec, seen)
        conditions.append(
            _condition(
                f"{name}Ready",
                ready,
                reason=reason,
                message=message,
                generation=owner.generation,
                previous=previous,
                now=now,
            )
        )
        details[name.lower()] = {"ready": ready, "reason": reason, "message": message[:1024]}
    all_ready = all(x["status"] == "True" for x in conditions)
    not_ready = [x["type"] for x in conditions if x["status"] != "True"]
    failing = any(x["reason"] in {"DependencyMissing", "ApplyFailed"} for x in conditions)
    ready_message = "all components ready" if all_ready else "waiting for " + ", ".join(not_ready)
    ready_reason = (
        "Suspended" if spec.suspend and all_ready else "Ready" if all_ready else "Waiting"
    )
    if failing:
        ready_reason = "ComponentFailed"
    conditions.insert(
        0,
        _condition(
            "Ready",
            all_ready,
            reason=ready_reason,
            message=ready_message,
            generation=owner.generation,
            previous=previous,
            now=now,
        ),
    )
    return {
        "observedGeneration": owner.generation,
        "phase": _phase(spec, all_ready, failing, seen.live),
        "conditions": conditions,
        "components": details,
        "models": {"ready": f"{models_ready}/{len(spec.models)}"},
        "endpoints": endpoints(owner, spec),
    }


def _absent_reason(component: str, spec: StreamPulseSpec) -> str:
    if component == "Kafka" and spec.kafka.mode == "External":
        return "External"
    if component == "Lakehouse" and spec.lakehouse.mode == "External":
        return "External"
    return "Disabled"


def _phase(spec: StreamPulseSpec, ready: bool, failing: bool, live: Mapping[str, object]) -> str:
    if failing:
        return "Failed"
    if spec.suspend:
        return "Suspended" if ready else "Progressing"
    if ready:
        return "Ready"
    return "Progressing" if any(v is not None for v in live.values()) else "Pending"


def endpoints(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    out = {"kafka": bootstrap_servers(owner, spec), "s3": s3_endpoint(owner, spec)}
    if spec.models and spec.gateway.gatewayName:
        hosts = spec.gateway.hostnames or ("<gateway>",)
        out["gateway"] = f"http://{hosts[0]}{predict_path('<model>')}"
    if spec.trino.enabled:
        name = c.child_name(owner, "trino")
        out["trino"] = f"http://{name}.{owner.namespace}.svc:8080"
    return out


def failed_status(owner: Owner, message: str, now: str) -> dict[str, Any]:
    """The status when the resource cannot be rendered at all (an invalid spec)."""
    return {
        "observedGeneration": owner.generation,
        "phase": "Failed",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": message[:1024],
                "observedGeneration": owner.generation,
                "lastTransitionTime": now,
            }
        ],
    }
