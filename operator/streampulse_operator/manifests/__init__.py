"""Pure renderers: a StreamPulse spec in, the child objects out. No I/O, no clock, no
randomness; the same spec always renders the same objects."""

from __future__ import annotations

from typing import Any

from streampulse_operator.manifests.common import Manifest
from streampulse_operator.manifests.flink import render_flink
from streampulse_operator.manifests.kafka import render_kafka
from streampulse_operator.manifests.lakehouse import render_lakehouse
from streampulse_operator.manifests.models import render_models
from streampulse_operator.manifests.monitoring import render_monitoring
from streampulse_operator.manifests.network import render_network
from streampulse_operator.manifests.trino import render_trino
from streampulse_operator.manifests.workers import render_workers
from streampulse_operator.spec import Owner, StreamPulseSpec

__all__ = ["Manifest", "render", "render_resource"]


def render(owner: Owner, spec: StreamPulseSpec) -> list[Manifest]:
    """Every child of one StreamPulse, in apply order (storage and Kafka before their users)."""
    return [
        *render_lakehouse(owner, spec),
        *render_kafka(owner, spec),
        *render_models(owner, spec),
        *render_workers(owner, spec),
        *render_flink(owner, spec),
        *render_trino(owner, spec),
        *render_monitoring(owner, spec),
        *render_network(owner, spec),
    ]


def render_resource(resource: dict[str, Any]) -> list[Manifest]:
    """Render from a whole StreamPulse object as the API server returns it."""
    meta = resource["metadata"]
    owner = Owner(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        uid=meta["uid"],
        generation=meta.get("generation", 1),
    )
    return render(owner, StreamPulseSpec.model_validate(resource.get("spec") or {}))
