"""Model servers: per model a Deployment, a Service and an HPA (``autoscaling/v2``); with
``gateway.gatewayName``, per model a Gateway API HTTPRoute publishing its prediction API.

The pipeline never goes through the gateway: the enrich worker calls each model's Service in the
cluster (``model_url``), so the data path needs no gateway controller and adds no hop; the routes
are for clients outside the pipeline."""

from __future__ import annotations

import json
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.spec import Model, Owner, StreamPulseSpec

COMPONENT = "model"
GATEWAY_API = "gateway.networking.k8s.io/v1"
# The annotation tells the reconciler an HPA owns spec.replicas of this Deployment.
HPA_MANAGED = f"{c.API_GROUP}/replicas-from-hpa"
# The HPA's count when the pipeline was suspended: restored on resume.
RESUME_REPLICAS = f"{c.API_GROUP}/replicas-before-suspend"


def model_component(model: Model) -> str:
    return f"{COMPONENT}-{model.name}"


def model_service_name(owner: Owner, model: Model) -> str:
    return c.child_name(owner, "model", model.name)


def render_models(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    out: list[c.Manifest] = []
    for model in spec.models:
        out.extend(_model(owner, spec, model))
    out.extend(_routes(owner, spec))
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
        **c.process_env(spec),
    }
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
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": c.labels(owner, component)},
            "spec": c.pod_spec([container]),
        },
    }
    if spec.suspend:  # the HPA is gone; zero is the operator's to hold
        deployment_spec = {"replicas": 0, **deployment_spec}
    # Otherwise the replicas are left out: the HPA owns them. The reconciler raises a new (or
    # resumed) Deployment to its minimum, or to its count before the suspension, through the
    # /scale subresource, so the operator's server-side apply never owns spec.replicas.
    deployment = c.obj(
        "apps/v1",
        "Deployment",
        c.metadata(owner, name, component, annotations={HPA_MANAGED: "true"}),
        spec=deployment_spec,
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
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": model.scaleDownStabilizationSeconds}
            },
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


def _routes(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    """One HTTPRoute per model, attached to the Gateway the spec names: ``POST
    /v1/models/<name>:predict`` (an exact path: Gateway API prefixes match whole path segments,
    and ``<name>:predict`` is one segment) to the model's Service. Each route reaches a handler
    of the model server, which a unit test checks against the server's own route table."""
    gateway = spec.gateway
    if not gateway.gatewayName:
        return []
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway.gatewayName,
    }
    if gateway.gatewayNamespace:
        parent["namespace"] = gateway.gatewayNamespace
    if gateway.sectionName:
        parent["sectionName"] = gateway.sectionName
    routes = []
    for model in spec.models:
        name = model_service_name(owner, model)
        body: dict[str, Any] = {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "Exact", "value": predict_path(model.name)},
                            "method": "POST",
                        }
                    ],
                    "backendRefs": [{"kind": "Service", "name": name, "port": c.MODEL_PORT}],
                }
            ],
        }
        if gateway.hostnames:
            body["hostnames"] = list(gateway.hostnames)
        routes.append(
            c.obj(
                GATEWAY_API,
                "HTTPRoute",
                c.metadata(owner, name, model_component(model)),
                spec=body,
            )
        )
    return routes


def predict_path(model: str) -> str:
    """The model server's prediction API for one model (workers/streampulse/serving/app.py)."""
    return f"/v1/models/{model}:predict"


def model_url(owner: Owner, model: Model) -> str:
    """The in-cluster base URL of a model's Service: what the enrich worker calls."""
    return f"http://{model_service_name(owner, model)}.{owner.namespace}.svc:{c.MODEL_PORT}"
