"""The ingest and enrich workers: per worker a ConfigMap (its ``STREAMPULSE_*`` settings), a
Deployment reading it (liveness and readiness probes on the worker's health port) and a
PodDisruptionBudget."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.kafka import bootstrap_servers, topic_replicas
from streampulse_operator.manifests.models import model_url
from streampulse_operator.spec import Owner, Resources, StreamPulseSpec

CONFIG_HASH = f"{c.API_GROUP}/config-hash"
HEALTH_PORT = 8081  # /healthz and /readyz of the workers (streampulse/health.py)


def _kafka_env(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    topics = spec.topics
    return {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(owner, spec),
        "STREAMPULSE_KAFKA__RAW_TOPIC": topics.raw.name,
        "STREAMPULSE_KAFKA__ENRICHED_TOPIC": topics.enriched.name,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": topics.dlq.name,
        "STREAMPULSE_KAFKA__PARTITIONS": str(topics.raw.partitions),
        "STREAMPULSE_KAFKA__REPLICATION_FACTOR": str(topic_replicas(spec, topics.raw)),
        "STREAMPULSE_HEALTH_PORT": str(HEALTH_PORT),
        **c.process_env(spec),
    }


def ingest_settings(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    source = spec.source
    return {
        **_kafka_env(owner, spec),
        "STREAMPULSE_JETSTREAM__ENDPOINTS": json.dumps(list(source.endpoints)),
        "STREAMPULSE_JETSTREAM__COLLECTIONS": json.dumps(list(source.collections)),
        "STREAMPULSE_JETSTREAM__COMPRESS": json.dumps(source.compress),
    }


def enrich_settings(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    enrichment = spec.enrichment
    return {
        **_kafka_env(owner, spec),
        # each model's Service, in the cluster: the pipeline does not go through the gateway
        "STREAMPULSE_ENRICH__MODEL_URLS": json.dumps(
            {model.name: model_url(owner, model) for model in spec.models}
        ),
        "STREAMPULSE_ENRICH__MODELS": json.dumps([m.name for m in spec.models]),
        "STREAMPULSE_ENRICH__MAX_IN_FLIGHT": str(enrichment.concurrency),
        "STREAMPULSE_ENRICH__BATCH_POSTS": str(enrichment.batchSize),
        "STREAMPULSE_ENRICH__GROUP_ID": c.child_name(owner, "enrich"),
    }


def render_workers(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    return [
        *_worker(owner, spec, "ingest", spec.ingestion.replicas, spec.ingestion.resources),
        *_worker(owner, spec, "enrich", spec.enrichment.replicas, spec.enrichment.resources),
    ]


def _worker(
    owner: Owner, spec: StreamPulseSpec, role: str, replicas: int, chosen: Resources
) -> list[c.Manifest]:
    name = c.child_name(owner, role)
    settings = ingest_settings(owner, spec) if role == "ingest" else enrich_settings(owner, spec)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    config = c.obj("v1", "ConfigMap", c.metadata(owner, name, role), data=settings)
    ports: list[dict[str, Any]] = [{"name": "health", "containerPort": HEALTH_PORT}]
    if spec.observability.metrics:
        ports.append({"name": "metrics", "containerPort": c.METRICS_PORT})
    container = c.container(
        role,
        spec.image.reference,
        pull_policy=spec.image.pullPolicy,
        resources_=c.resources(chosen, requests=("250m", "256Mi"), limits=("1", "1Gi")),
        args=[role],
        envFrom=[{"configMapRef": {"name": name}}],
        ports=ports,
        readinessProbe=c.http_probe("/readyz", "health", 10),
        livenessProbe={**c.http_probe("/healthz", "health", 10), "failureThreshold": 3},
    )
    selector = c.selector_labels(owner, role)
    deployment = c.obj(
        "apps/v1",
        "Deployment",
        c.metadata(owner, name, role),
        spec={
            "replicas": 0 if spec.suspend else replicas,
            # one Jetstream subscription owns the cursor: never two ingest pods at once
            "strategy": {"type": "Recreate"} if role == "ingest" else {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": c.labels(owner, role),
                    "annotations": {CONFIG_HASH: digest},
                },
                "spec": c.pod_spec([container], terminationGracePeriodSeconds=30),
            },
        },
    )
    budget = c.obj(
        "policy/v1",
        "PodDisruptionBudget",
        c.metadata(owner, name, role),
        spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    )
    return [config, deployment, budget]
