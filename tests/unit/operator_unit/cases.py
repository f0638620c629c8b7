"""StreamPulse specs the unit tests render: the chart's example and the variants that switch
whole components on or off (``monitored``: the example with every Prometheus monitor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streampulse_operator.spec import Owner, StreamPulseSpec
from tests.unit.operator_unit.schemas import REPO, apply_defaults, streampulse_schema

EXAMPLE = REPO / "charts" / "streampulse-operator" / "examples" / "streampulse.yaml"
OWNER = Owner(name="demo", namespace="analytics", uid="6f1c2a9e-0000-4000-8000-000000000001")


def defaulted(spec: dict[str, Any]) -> StreamPulseSpec:
    schema = streampulse_schema()["properties"]["spec"]
    return StreamPulseSpec.model_validate(apply_defaults(schema, spec))


def example_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(Path(EXAMPLE).read_text())["spec"]
    return spec


CASES: dict[str, dict[str, Any]] = {
    "example": example_spec(),
    "defaults": {},
    "external": {
        "kafka": {"mode": "External", "bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092"},
        "lakehouse": {
            "mode": "External",
            "endpoint": "https://s3.example.com",
            "credentialsSecretName": "lake-credentials",
        },
        "trino": {"enabled": False},
        "observability": {"serviceMonitors": True},
        "gateway": {
            "gatewayName": "public",
            "gatewayNamespace": "gateways",
            "sectionName": "https",
            "hostnames": ["models.example.com"],
        },
        "models": [{"name": "toxicity", "task": "multi_label_classification"}],
    },
    "suspended": {**example_spec(), "suspend": True},
    "monitored": {**example_spec(), "observability": {"serviceMonitors": True}},
}
