"""The GitHub workflow runs the system test in its upstream mode, on a kind cluster whose one node
the pipeline's CPU requests fit (issue 14, item 6; docs/cluster.md, section 6)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from streampulse_operator.manifests import render_resource
from tests.harness.pipeline import checks, infra, resource, target

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "operator-kind.yaml"
TEST_PODS_M = {
    "the operator (helm install, resources.requests.cpu)": 25,
    "replay and toolbox": 20,
    "the HPA test's load pod and a reachability probe": 20,
}


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _steps() -> list[dict[str, Any]]:
    (job,) = _workflow()["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def test_the_workflow_runs_make_test_cluster_in_upstream_mode() -> None:
    (job,) = _workflow()["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert job["env"][target.MODE_VARIABLE] == "upstream"
    assert job["env"][target.KIND_CLUSTER_VARIABLE] == target.KIND_CLUSTER
    runs = [step["run"].strip() for step in _steps() if "run" in step]
    assert "make test-cluster" in runs
    # the cluster exists before the test: kind from kind-cluster.yaml, then the controllers
    names = [step.get("uses", "").split("@")[0] or step.get("name", "") for step in _steps()]
    kind_step = names.index("helm/kind-action")
    assert kind_step < runs_index(_steps(), "make test-cluster")
    (kind,) = [s for s in _steps() if s.get("uses", "").startswith("helm/kind-action")]
    assert kind["with"]["config"] == "kind-cluster.yaml"
    assert kind["with"]["cluster_name"] == target.KIND_CLUSTER
    installs = "\n".join(runs)
    for controller in ("metrics-server", "strimzi-kafka-operator", "flink-kubernetes-operator"):
        assert controller in installs


def runs_index(steps: list[dict[str, Any]], command: str) -> int:
    return next(i for i, step in enumerate(steps) if step.get("run", "").strip() == command)


def test_kind_cluster_yaml_is_one_node_of_the_expected_name() -> None:
    config = yaml.safe_load((REPO / "kind-cluster.yaml").read_text())
    assert config["name"] == target.KIND_CLUSTER
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]


def _peak_pod_requests_m(objects: list[dict[str, Any]]) -> dict[str, int]:
    """CPU requests of every pod the upstream StreamPulse runs at its peak, by object: HPAs at
    their maximum, Strimzi's broker pool, topic operator and exporter, the Flink job and task
    managers as the Flink operator sizes them, the bucket Job."""
    hpa_max = {
        o["spec"]["scaleTargetRef"]["name"]: int(o["spec"]["maxReplicas"])
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    out: dict[str, int] = {}
    for obj in objects:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind in {"Deployment", "StatefulSet", "Job"}:
            pod = spec["template"]["spec"]
            per_pod = sum(
                checks.cpu_millis(str(c.get("resources", {}).get("requests", {}).get("cpu", "0")))
                for c in pod["containers"]
            )
            replicas = hpa_max.get(name, int(spec.get("replicas", 1)))
            out[f"{kind}/{name}"] = per_pod * replicas
        elif kind == "KafkaNodePool":
            cpu = str(spec["resources"]["requests"]["cpu"])
            out[f"{kind}/{name}"] = checks.cpu_millis(cpu) * int(spec["replicas"])
        elif kind == "Kafka":
            operator = spec["entityOperator"]["topicOperator"]["resources"]["requests"]["cpu"]
            exporter = spec.get("kafkaExporter", {}).get("resources", {}).get("requests", {})
            out[f"{kind}/{name} topic operator"] = checks.cpu_millis(str(operator))
            out[f"{kind}/{name} exporter"] = checks.cpu_millis(str(exporter.get("cpu", "0")))
        elif kind == "FlinkDeployment":
            slots = int(spec["flinkConfiguration"]["taskmanager.numberOfTaskSlots"])
            task_managers = math.ceil(int(spec["job"]["parallelism"]) / slots)
            jm, tm = spec["jobManager"]["resource"]["cpu"], spec["taskManager"]["resource"]["cpu"]
            out[f"{kind}/{name}"] = round(1000 * (float(jm) + task_managers * float(tm)))
    return out


def test_the_upstream_pipeline_fits_a_four_vcpu_runner() -> None:
    spec = resource.PipelineSpec()
    managed = infra.Infra.managed_by_operator(spec.name, spec.namespace)
    manifest = spec.manifest(managed)
    manifest["metadata"]["uid"] = "system-test"
    pipeline = _peak_pod_requests_m(render_resource(manifest))
    # what the test asserts on is there: Strimzi's broker, MinIO, the Flink job, the HPA's model
    assert any(key.startswith("KafkaNodePool/") for key in pipeline)
    assert any(key.startswith("StatefulSet/") for key in pipeline)
    assert any(key.startswith("FlinkDeployment/") for key in pipeline)
    assert pipeline[f"Deployment/{spec.name}-model-{resource.LOADED_MODEL}"] == 25 * 4
    total = (
        sum(pipeline.values())
        + sum(target.UPSTREAM_ADDON_REQUESTS_M.values())
        + sum(TEST_PODS_M.values())
    )
    assert total <= target.RUNNER_MILLICPU, (total, pipeline)
    # and leaves room: the load test needs the models' CPU above their requests
    assert total <= 0.85 * target.RUNNER_MILLICPU, (total, pipeline)
