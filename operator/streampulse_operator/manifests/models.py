"""Model servers: per model a Deployment, a Service and an HPA (``autoscaling/v2``), and one
Ingress (the gateway) routing ``/models/<name>`` and the prediction API to each Service."""

from __future__ import annotations

import json
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.spec import Model, Owner, StreamPulseSpec

COMPONENT = "model"
GATEWAY = "gateway"
# The annotation tells the reconciler an HPA owns spec.replicas once the Deployment runs.
HPA_MANAGED = f"{c.API_GROUP}/replicas-from-hpa"


def model_component(model: Model) -> str:
    return f"{COMPONENT}-{model.name}"


def model_service_name(owner: Owner, model: Model) -> str:
    return c.child_name(owner, "model", model.name)


def render_models(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    out: list[c.Manifest] = []
    for model in spec.models:
        out.extend(_model(owner, spec, model))
    if spec.models:
        out.append(_gateway(owner, spec))
    return out


def _model(owner: Owner, spec: StreamPulseSpec, model: Model) -> list[c.Manifest]:
    name = model_service_name(owner, model)
    component = model_component(model)
    selector = c.selector_labels(owner, component)
    model_dir = model.modelDir or f"/models/{model.name}"
    env = {
        "STREAMPULSE_SERVING__HOST": "0.0.0.0",  # noqa: S104 - inside the pod
        "STREAMPULSE_SERVING__PORT": str(c.MODEL_PORT),
        "STREAMPULSE_SERVING__MODEL_DIRS": json.dumps([model_dir]),
        "STREAMPULSE_SERVING__MAX_BATCH_SIZE": str(model.maxBatchSize),
        "STREAMPULSE_LOG_FORMAT": spec.observability.logFormat,
    }
    if spec.observability.metrics:
        env["STREAMPULSE_METRICS_PORT"] = str(c.METRICS_PORT)
    ports: list[dict[str, Any]] = [{"name": "http", "containerPort": c.MODEL_PORT}]
    if spec.observability.metrics:
        ports.append({"name": "metrics", "containerPort": c.METRICS_PORT})
    container = c.container(
        "model-server",
        model.image or spec.image.models_reference,
        pull_policy=spec.image.pullPolicy,
        resources_=c.resources(model.resources, requests=("500m", "512Mi"), limits=("2", "2Gi")),
        args=["serve-models"],
        env=c.env_list(env),
        ports=ports,
        readinessProbe=c.http_probe("/readyz", "http", 5),
        livenessProbe=c.http_probe("/healthz", "http", 10),
    )
    replicas = 0 if spec.suspend else model.minReplicas
    annotations = {} if spec.suspend else {HPA_MANAGED: "true"}
    deployment = c.obj(
        "apps/v1",
        "Deployment",
        c.metadata(owner, name, component, annotations=annotations),
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": c.labels(owner, component)},
                "spec": c.pod_spec([container]),
            },
        },
    )
    service = c.obj(
        "v1",
        "Service",
        c.metadata(owner, name, component),
        spec={
            "selector": selector,
            "ports": [
                {"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]}
                for p in ports
            ],
        },
    )
    if spec.suspend:  # an HPA cannot hold a Deployment at zero
        return [deployment, service]
    hpa = c.obj(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        c.metadata(owner, name, component),
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": model.minReplicas,
            "maxReplicas": model.maxReplicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": model.targetCPUUtilization,
                        },
                    },
                }
            ],
        },
    )
    return [deployment, service, hpa]


def _gateway(owner: Owner, spec: StreamPulseSpec) -> c.Manifest:
    paths: list[dict[str, Any]] = []
    for model in spec.models:
        backend = {"service": {"name": model_service_name(owner, model), "port": {"name": "http"}}}
        paths.append({"path": f"/models/{model.name}", "pathType": "Prefix", "backend": backend})
        paths.append(
            {"path": f"/v1/models/{model.name}:predict", "pathType": "Exact", "backend": backend}
        )
    rule: dict[str, Any] = {"http": {"paths": paths}}
    if spec.gateway.host:
        rule["host"] = spec.gateway.host
    body: dict[str, Any] = {"ingressClassName": spec.gateway.ingressClassName, "rules": [rule]}
    if spec.gateway.tlsSecretName and spec.gateway.host:
        body["tls"] = [{"hosts": [spec.gateway.host], "secretName": spec.gateway.tlsSecretName}]
    return c.obj(
        "networking.k8s.io/v1",
        "Ingress",
        c.metadata(owner, c.child_name(owner, GATEWAY), GATEWAY),
        spec=body,
    )
