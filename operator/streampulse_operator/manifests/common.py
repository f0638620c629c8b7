"""Building blocks every renderer shares: names, labels, owner references, security contexts,
resources and ports. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

from streampulse_operator.spec import Owner, ResourceList, Resources, StreamPulseSpec

Manifest = dict[str, Any]

API_GROUP = "streampulse.io"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "StreamPulse"
MANAGED_BY = "streampulse-operator"
INSTANCE_LABEL = f"{API_GROUP}/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
METRICS_PORT = 9464
MODEL_PORT = 8500
RUNTIME_UID = 10001
SCRATCH_DIR = "/tmp"  # noqa: S108 - an emptyDir inside the pod, not the host's /tmp


def child_name(owner: Owner, *parts: str) -> str:
    """``<owner>-<part>-...``: every child carries its owner's name first."""
    return "-".join((owner.name, *parts))


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    return {INSTANCE_LABEL: owner.name, COMPONENT_LABEL: component}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "streampulse",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/part-of": "streampulse",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(owner, component),
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, component: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }
    meta.update(extra)
    return meta


def obj(api_version: str, kind: str, meta: dict[str, Any], **body: Any) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def container_security_context() -> dict[str, Any]:
    """The Pod Security Standards' restricted profile, per container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(uid: int = RUNTIME_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pick(chosen: ResourceList, default: dict[str, str]) -> dict[str, Any]:
    return {
        "cpu": default["cpu"] if chosen.cpu is None else chosen.cpu,
        "memory": default["memory"] if chosen.memory is None else chosen.memory,
    }


def resources(
    chosen: Resources, *, requests: tuple[str, str], limits: tuple[str, str]
) -> dict[str, Any]:
    """Requests and limits, each value from the spec or the component's default (cpu, memory)."""
    return {
        "requests": _pick(chosen.requests, {"cpu": requests[0], "memory": requests[1]}),
        "limits": _pick(chosen.limits, {"cpu": limits[0], "memory": limits[1]}),
    }


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """An emptyDir at /tmp: read-only root filesystems still need scratch space."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, {
        "name": "tmp",
        "mountPath": SCRATCH_DIR,
    }


def pod_spec(
    containers: list[dict[str, Any]],
    *,
    volumes: list[dict[str, Any]] | None = None,
    uid: int = RUNTIME_UID,
    **extra: Any,
) -> dict[str, Any]:
    tmp, _ = tmp_volume()
    return {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(uid),
        "containers": containers,
        "volumes": [tmp, *(volumes or [])],
        **extra,
    }


def container(
    name: str,
    image: str,
    *,
    resources_: dict[str, Any],
    pull_policy: str = "IfNotPresent",
    mounts: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    _, tmp_mount = tmp_volume()
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "securityContext": container_security_context(),
        "resources": resources_,
        "volumeMounts": [tmp_mount, *(mounts or [])],
        **extra,
    }


def env_list(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": key, "value": value} for key, value in values.items()]


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a Secret: values never appear in the manifests."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def http_probe(path: str, port: int | str, period: int = 10) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period}


def process_env(spec: StreamPulseSpec) -> dict[str, str]:
    """What every StreamPulse process in a pod is told: log format, endpoints bound to every
    interface (Prometheus and the kubelet reach them from outside the pod), metrics and traces."""
    env = {
        "STREAMPULSE_LOG_FORMAT": spec.observability.logFormat,
        "STREAMPULSE_BIND_HOST": "0.0.0.0",  # noqa: S104 - scraped and probed from outside the pod
    }
    if spec.observability.metrics:
        env["STREAMPULSE_METRICS_PORT"] = str(METRICS_PORT)
    if spec.observability.otlpEndpoint:
        env["STREAMPULSE_TELEMETRY__OTLP_ENDPOINT"] = spec.observability.otlpEndpoint
    return env
