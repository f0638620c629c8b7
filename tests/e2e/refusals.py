"""Resources the API server must refuse, with the message a user reads: invalid specs, and
changes Kubernetes or the engines cannot apply (CEL transition rules)."""

from __future__ import annotations

from typing import Any

INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "models[0].maxReplicas",
        {
            "models": [
                {"name": "a", "task": "token_classification", "minReplicas": 5, "maxReplicas": 2}
            ]
        },
        "maxReplicas must be greater than or equal to minReplicas",
    ),
    ("task enum", {"models": [{"name": "a", "task": "summarize"}]}, "Unsupported value"),
    ("kafka mode", {"kafka": {"mode": "Cloud"}}, "Unsupported value"),
    (
        "kafka version Strimzi 1.2.0 does not run",
        {"kafka": {"version": "4.1.0"}},
        'supported values: "4.2.0", "4.2.1", "4.3.0", "4.3.1"',
    ),
    ("external kafka", {"kafka": {"mode": "External"}}, "bootstrapServers is required"),
    (
        "external lakehouse",
        {"lakehouse": {"mode": "External"}},
        "credentialsSecretName are required",
    ),
    ("partitions", {"topics": {"raw": {"partitions": 0}}}, "should be greater than or equal to 1"),
    ("replicas vs brokers", {"topics": {"raw": {"replicas": 3}}}, "cannot exceed kafka.replicas"),
    (
        "in-sync replicas vs replicas",
        {"kafka": {"replicas": 3}, "topics": {"raw": {"minInSyncReplicas": 4}}},
        "minInSyncReplicas cannot exceed its replicas",
    ),
    (
        "in-sync replicas vs default replicas",
        {"topics": {"dlq": {"minInSyncReplicas": 2}}},
        "minInSyncReplicas cannot exceed its replicas",
    ),
    ("endpoint scheme", {"source": {"endpoints": ["http://x/subscribe"]}}, "should match"),
    ("no endpoints", {"source": {"endpoints": []}}, "should have at least 1 items"),
    ("ingest replicas", {"ingestion": {"replicas": 2}}, "should be less than or equal to 1"),
    (
        "monitors without metrics",
        {"observability": {"metrics": False, "serviceMonitors": True}},
        "needs observability.metrics",
    ),
    (
        "cpu target",
        {"models": [{"name": "a", "task": "token_classification", "targetCPUUtilization": 5}]},
        "greater than or equal to 10",
    ),
    (
        "duplicate model",
        {
            "models": [
                {"name": "a", "task": "token_classification"},
                {"name": "a", "task": "token_classification"},
            ]
        },
        "Duplicate value",
    ),
    ("flink version", {"flink": {"flinkVersion": "v1_9"}}, "Unsupported value"),
    (
        "model name too long for its Service",
        {"models": [{"name": "m" * 30, "task": "token_classification"}]},
        "must be at most 56 characters",
    ),
]


REFUSED_CHANGES: list[tuple[dict[str, Any], str]] = [
    (
        {"kafka": {"mode": "External", "bootstrapServers": "kafka.example:9092"}},
        "kafka.mode cannot change",
    ),
    (
        {
            "lakehouse": {
                "mode": "External",
                "endpoint": "https://s3.example",
                "credentialsSecretName": "lake",
            }
        },
        "lakehouse.mode cannot change",
    ),
    ({"lakehouse": {"storage": {"size": "40Gi"}}}, "lakehouse.storage cannot change"),
    ({"kafka": {"storage": {"size": "10Gi"}}}, "kafka.storage can grow but never shrink"),
    ({"topics": {"raw": {"partitions": 3}}}, "can grow but never shrink"),
]
REFUSED_IDS = ["kafka mode", "lakehouse mode", "minio volume", "kafka volume shrink", "partitions"]
