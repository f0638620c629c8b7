"""Renderers against golden files, and the properties every rendered object must have.

Regenerate the golden files after an intended change with
``STREAMPULSE_UPDATE_GOLDEN=1 pytest tests/unit/operator_unit``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from streampulse_operator.manifests import render, render_resource
from streampulse_operator.manifests.common import INSTANCE_LABEL
from tests.unit.operator_unit.cases import CASES, OWNER, defaulted

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent / "golden"


def rendered(case: str) -> list[dict[str, Any]]:
    return render(OWNER, defaulted(json.loads(json.dumps(CASES[case]))))


def pods(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec an object renders, for our own workloads and the engines' templates."""
    spec = obj.get("spec", {})
    if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
        return [spec["template"]["spec"]]
    if obj["kind"] == "FlinkDeployment":
        # the Flink operator sets each container's requests and limits from these
        assert {"cpu", "memory"} <= set(spec["jobManager"]["resource"])
        assert {"cpu", "memory"} <= set(spec["taskManager"]["resource"])
        template = spec["podTemplate"]["spec"]
        containers = [{**x, "resources": RESOURCES_SET_ELSEWHERE} for x in template["containers"]]
        return [{**template, "containers": containers}]
    return strimzi_pods(obj)


# Strimzi's and Flink's containers take their resources from other fields of their spec.
RESOURCES_SET_ELSEWHERE = {
    "requests": {"cpu": "", "memory": ""},
    "limits": {"cpu": "", "memory": ""},
}


def strimzi_pods(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Strimzi's templates as pod specs: the pod's security context and its containers'."""
    spec = obj.get("spec", {})
    templates: list[tuple[dict[str, Any], list[str]]] = []
    if obj["kind"] == "KafkaNodePool":
        templates.append((spec["template"], ["kafkaContainer"]))
    if obj["kind"] == "Kafka":
        templates.append((spec["entityOperator"].get("template", {}), ["topicOperatorContainer"]))
        if "kafkaExporter" in spec:
            templates.append((spec["kafkaExporter"]["template"], ["container"]))
    return [
        {
            "securityContext": template.get("pod", {}).get("securityContext", {}),
            "containers": [
                {"name": name, **template.get(name, {}), "resources": RESOURCES_SET_ELSEWHERE}
                for name in containers
            ],
        }
        for template, containers in templates
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_file(case: str) -> None:
    text = yaml.safe_dump_all(rendered(case), sort_keys=True)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("STREAMPULSE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with STREAMPULSE_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_child_is_owned_labelled_and_unique(case: str) -> None:
    objects = rendered(case)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == OWNER.namespace
        assert meta["labels"][INSTANCE_LABEL] == OWNER.name
        (ref,) = meta["ownerReferences"]
        assert ref["uid"] == OWNER.uid
        assert ref["controller"] is True
        assert ref["kind"] == "StreamPulse"
        assert len(meta["name"]) <= 63


# Every kind whose objects run pods: the restricted check below must see each of them.
POD_KINDS = {"Deployment", "StatefulSet", "Job", "FlinkDeployment", "Kafka", "KafkaNodePool"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pod_template_is_restricted_with_requests_and_limits(case: str) -> None:
    objects = rendered(case)
    seen = {o["kind"] for o in objects if pods(o)}
    assert seen == {o["kind"] for o in objects} & POD_KINDS
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for pod in pods(obj):
            context = pod["securityContext"]
            assert context.get("runAsNonRoot") is True, name
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            assert context.get("runAsUser", 1) != 0, name
            assert not pod.get("hostNetwork"), name
            assert not pod.get("hostPID"), name
            assert not [v for v in pod.get("volumes", []) if "hostPath" in v], name
            if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
                assert pod["automountServiceAccountToken"] is False, name
            for container in [*pod["containers"], *pod.get("initContainers", [])]:
                where = f"{name} {container['name']}"
                context = container.get("securityContext", {})
                assert context.get("allowPrivilegeEscalation") is False, where
                assert context.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not context["capabilities"].get("add"), where
                assert context.get("runAsNonRoot") is True, where
                assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
                assert context.get("readOnlyRootFilesystem") is True, where
                assert not context.get("privileged"), where
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) == {"cpu", "memory"}, where


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_secret_values_in_rendered_objects(case: str) -> None:
    for obj in rendered(case):
        assert obj["kind"] != "Secret"
        for pod in pods(obj):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    if any(w in env["name"] for w in ("KEY", "PASSWORD", "USER", "SECRET")):
                        assert "value" not in env, env
                        assert "secretKeyRef" in env["valueFrom"], env
        text = json.dumps(obj)
        assert "aws-secret-key=${ENV:S3_SECRET_KEY}" in text or "secret-key=" not in text


def test_suspend_scales_to_zero_and_suspends_flink() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered("suspended")}
    deployments = [o for (kind, _), o in objects.items() if kind == "Deployment"]
    assert deployments
    assert all(d["spec"]["replicas"] == 0 for d in deployments)
    assert not [k for k in objects if k[0] == "HorizontalPodAutoscaler"]
    assert objects[("FlinkDeployment", "demo-flink")]["spec"]["job"]["state"] == "suspended"
    assert ("Kafka", "demo") in objects  # data stays


def test_external_mode_renders_no_kafka_or_minio_and_points_workers_at_them() -> None:
    objects = rendered("external")
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Kafka", "KafkaNodePool", "KafkaTopic", "StatefulSet", "Job"}
    assert "ServiceMonitor" in kinds
    (ingest,) = [
        o for o in objects if o["kind"] == "ConfigMap" and "ingest" in o["metadata"]["name"]
    ]
    assert ingest["data"]["STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS"].startswith("kafka-0.kafka:9092")
    # the external cluster's default.replication.factor
    assert ingest["data"]["STREAMPULSE_KAFKA__REPLICATION_FACTOR"] == "-1"
    (flink,) = [o for o in objects if o["kind"] == "FlinkDeployment"]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in flink["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs == {"lake-credentials"}


def test_without_a_gateway_no_routes_are_published() -> None:
    assert not [o for o in rendered("example") if o["kind"] in {"HTTPRoute", "Ingress"}]


def test_topic_partitions_and_model_replicas_follow_the_spec() -> None:
    spec = CASES["example"] | {"topics": {"raw": {"partitions": 12}}}
    spec["models"] = [
        {
            "name": "toxicity",
            "task": "multi_label_classification",
            "minReplicas": 2,
            "maxReplicas": 7,
        }
    ]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(OWNER, defaulted(spec))}
    assert objects[("KafkaTopic", "demo-raw")]["spec"]["partitions"] == 12
    hpa = objects[("HorizontalPodAutoscaler", "demo-model-toxicity")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 7)
    assert ("Deployment", "demo-model-ner") not in objects


def test_render_resource_reads_a_whole_object() -> None:
    resource = {
        "apiVersion": "streampulse.io/v1alpha1",
        "kind": "StreamPulse",
        "metadata": {"name": OWNER.name, "namespace": OWNER.namespace, "uid": OWNER.uid},
        "spec": json.loads(json.dumps(CASES["defaults"])),
    }
    assert render_resource(resource) == rendered("defaults")


def _ports(pod: dict[str, Any]) -> set[str]:
    return {p["name"] for c in pod["containers"] for p in c.get("ports", [])}


def _ports_of(service: dict[str, Any]) -> set[str]:
    return {p["name"] for p in service["spec"]["ports"]}


def test_every_monitor_selects_a_rendered_metrics_endpoint() -> None:
    objects = rendered("monitored")
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"].endswith("Monitor")}
    assert set(monitors) == {"demo", "demo-flink", "demo-kafka-exporter", "demo-minio"}
    services = [o for o in objects if o["kind"] == "Service"]
    for name in ("demo", "demo-minio"):
        spec = monitors[name]["spec"]
        (endpoint,) = spec["endpoints"]
        selector = spec["selector"]["matchLabels"]
        scraped = [
            s
            for s in services
            if selector.items() <= s["metadata"]["labels"].items()
            and endpoint["port"] in _ports_of(s)
        ]
        assert scraped, name
    assert {s["metadata"]["name"] for s in services if "metrics" in _ports_of(s)} >= {
        "demo-ingest-metrics",
        "demo-enrich-metrics",
        "demo-model-toxicity",
    }
    (flink,) = [o for o in objects if o["kind"] == "FlinkDeployment"]
    template = flink["spec"]["podTemplate"]
    flink_monitor = monitors["demo-flink"]["spec"]
    assert (
        flink_monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )
    assert flink_monitor["podMetricsEndpoints"][0]["port"] in _ports(template["spec"])
    port = flink["spec"]["flinkConfiguration"]["metrics.reporter.prom.port"]
    assert {int(port)} == {
        p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]
    }
    (kafka,) = [o for o in objects if o["kind"] == "Kafka"]
    assert kafka["spec"]["kafkaExporter"]["groupRegex"] == ".*"
    exporter = monitors["demo-kafka-exporter"]["spec"]
    assert exporter["selector"]["matchLabels"]["strimzi.io/name"] == "demo-kafka-exporter"
    (minio,) = [o for o in objects if o["kind"] == "StatefulSet"]
    env = {e["name"]: e.get("value") for e in pods(minio)[0]["containers"][0]["env"]}
    assert env["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"


def test_metrics_off_renders_no_exporters() -> None:
    spec = CASES["example"] | {"observability": {"metrics": False}}
    objects = render(OWNER, defaulted(spec))
    (kafka,) = [o for o in objects if o["kind"] == "Kafka"]
    assert "kafkaExporter" not in kafka["spec"]
    (flink,) = [o for o in objects if o["kind"] == "FlinkDeployment"]
    assert not any(k.startswith("metrics.") for k in flink["spec"]["flinkConfiguration"])
    assert not [o for o in objects if o["kind"].endswith("Monitor")]
