"""Status from the children's real state: pure functions from what was observed to the
StreamPulse ``status`` (observedGeneration, phase, one condition per component plus Ready,
per-component detail and endpoints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.kafka import bootstrap_servers
from streampulse_operator.manifests.lakehouse import s3_endpoint
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENTS = ("Kafka", "Lakehouse", "Models", "Workers", "Flink", "Trino")
READINESS_KINDS = frozenset(
    {"Kafka", "KafkaTopic", "Deployment", "StatefulSet", "Job", "FlinkDeployment"}
)


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
        "ingest": "Workers",
        "enrich": "Workers",
        "flink": "Flink",
    }.get(label, "")


@dataclass(frozen=True)
class ChildState:
    ready: bool
    message: str


def _condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(x.get("type") == kind and x.get("status") == "True" for x in conditions)


def child_state(manifest: Mapping[str, Any], live: Mapping[str, Any] | None) -> ChildState:
    """Whether one child is ready, from the state its own controller reports."""
    key = key_of(manifest)
    if live is None:
        return ChildState(False, f"{key} does not exist yet")
    kind, status = manifest["kind"], live.get("status") or {}
    if kind in {"Kafka", "KafkaTopic"}:
        ready = _condition_true(live, "Ready")
        return ChildState(ready, f"{key} is {'Ready' if ready else 'not Ready'}")
    if kind in {"Deployment", "StatefulSet"}:
        want = int(live.get("spec", {}).get("replicas", 1))
        have = int(status.get("availableReplicas" if kind == "Deployment" else "readyReplicas", 0))
        current = status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
        return ChildState(current and have >= want, f"{key}: {have}/{want} available")
    if kind == "Job":
        done = int(status.get("succeeded", 0)) >= 1
        return ChildState(done, f"{key} {'complete' if done else 'running'}")
    if kind == "FlinkDeployment":
        want = manifest["spec"]["job"]["state"]
        job = str((status.get("jobStatus") or {}).get("state", "")) or "UNKNOWN"
        ready = job == "RUNNING" if want == "running" else job in {"SUSPENDED", "FINISHED"}
        if want == "suspended" and status.get("lifecycleState") == "SUSPENDED":
            ready = True
        return ChildState(ready, f"{key}: job {job}")
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
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": now if changed or before is None else before["lastTransitionTime"],
    }


def summarize(
    owner: Owner,
    spec: StreamPulseSpec,
    manifests: Sequence[Mapping[str, Any]],
    live: Mapping[str, Mapping[str, Any] | None],
    *,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
    now: str,
) -> dict[str, Any]:
    """The whole ``status`` for one StreamPulse."""
    previous = {str(x["type"]): x for x in previous_conditions if "lastTransitionTime" in x}
    by_component: dict[str, list[ChildState]] = {name: [] for name in COMPONENTS}
    models_total, models_ready = len(spec.models), 0
    for manifest in manifests:
        if manifest["kind"] not in READINESS_KINDS:
            continue
        component = component_of(manifest)
        if not component:
            continue
        state = child_state(manifest, live.get(key_of(manifest)))
        by_component[component].append(state)
        if component == "Models" and manifest["kind"] == "Deployment" and state.ready:
            models_ready += 1
    conditions, details = [], {}
    for name in COMPONENTS:
        states = by_component[name]
        waiting = [s.message for s in states if not s.ready]
        ready = not waiting
        if not states:
            reason, message = _absent_reason(name, spec), "nothing to run"
        elif spec.suspend and name in {"Models", "Workers", "Flink", "Trino"}:
            reason, message = ("Suspended", "suspended") if ready else ("Suspending", waiting[0])
        else:
            reason = "Ready" if ready else "Waiting"
            message = f"{len(states)} ready" if ready else "; ".join(waiting[:3])
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
        details[name.lower()] = {"ready": ready, "message": message[:1024]}
    all_ready = all(x["status"] == "True" for x in conditions)
    not_ready = [x["type"] for x in conditions if x["status"] != "True"]
    ready_message = "all components ready" if all_ready else "waiting for " + ", ".join(not_ready)
    ready_reason = (
        "Suspended" if spec.suspend and all_ready else "Ready" if all_ready else "Waiting"
    )
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
        "phase": _phase(spec, all_ready, live),
        "conditions": conditions,
        "components": details,
        "models": {"ready": f"{models_ready}/{models_total}"},
        "endpoints": endpoints(owner, spec),
    }


def _absent_reason(component: str, spec: StreamPulseSpec) -> str:
    if component == "Kafka" and spec.kafka.mode == "External":
        return "External"
    if component == "Lakehouse" and spec.lakehouse.mode == "External":
        return "External"
    return "Disabled"


def _phase(spec: StreamPulseSpec, ready: bool, live: Mapping[str, object]) -> str:
    if spec.suspend:
        return "Suspended" if ready else "Progressing"
    if ready:
        return "Ready"
    return "Progressing" if any(v is not None for v in live.values()) else "Pending"


def endpoints(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    out = {"kafka": bootstrap_servers(owner, spec), "s3": s3_endpoint(owner, spec)}
    if spec.models:
        host = spec.gateway.host or "*"
        out["gateway"] = f"{'https' if spec.gateway.tlsSecretName else 'http'}://{host}/models"
    if spec.trino.enabled:
        name = c.child_name(owner, "trino")
        out["trino"] = f"http://{name}.{owner.namespace}.svc:8080"
    return out


def failed_status(owner: Owner, message: str, now: str) -> dict[str, Any]:
    """The status when the children could not be applied at all."""
    return {
        "observedGeneration": owner.generation,
        "phase": "Failed",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ApplyFailed",
                "message": message[:1024],
                "observedGeneration": owner.generation,
                "lastTransitionTime": now,
            }
        ],
    }
