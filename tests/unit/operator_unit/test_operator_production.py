"""What production users of the Flink operator and Kubernetes expect of the rendered objects:
Flink with Kubernetes HA and its own ServiceAccount, replicas left to the HPAs, NetworkPolicies
that let only the pipeline through, and an operator that needs no finalizer and notices a
stuck watch."""

from __future__ import annotations

from typing import Any

import pytest

from streampulse_operator.handlers import register
from streampulse_operator.manifests import render
from streampulse_operator.manifests.flink import CLUSTER_ROLE
from streampulse_operator.resyncing import WatchHealth
from tests.harness.flink import load_flink_module
from tests.unit.operator_unit.cases import CASES, OWNER, defaulted

pytestmark = pytest.mark.unit


def objects(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(OWNER, defaulted(spec))}


def test_flink_runs_with_kubernetes_ha_and_retained_checkpoints() -> None:
    flink = objects(CASES["example"])[("FlinkDeployment", "demo-flink")]["spec"]
    config = flink["flinkConfiguration"]
    assert config["high-availability.type"] == "kubernetes"
    assert config["high-availability.storageDir"] == "s3://streampulse/flink/ha"
    assert (
        config["execution.checkpointing.externalized-checkpoint-retention"]
        == "RETAIN_ON_CANCELLATION"
    )
    assert config["web.submit.enable"] == "false"
    assert flink["job"]["upgradeMode"] == "last-state"


def test_flinks_s3_file_system_keeps_directory_markers_as_the_paimon_catalog_does() -> None:
    """Checkpoints and HA state go through Flink's S3 file system; deleting directory markers
    after each write stalls it in retries against stores that map objects to directories, and
    the job's own Paimon catalog keeps them for the same reason."""
    flink = objects(CASES["example"])[("FlinkDeployment", "demo-flink")]["spec"]
    options = load_flink_module("streampulse_flink/options.py", "streampulse_flink_options")
    catalog = options.JobOptions(warehouse="s3://streampulse/warehouse").catalog_sql("paimon")
    assert "'s3.directory.marker.retention' = 'keep'" in catalog
    assert flink["flinkConfiguration"]["s3.directory.marker.retention"] == "keep"


def test_the_flink_job_has_its_own_service_account_bound_to_the_charts_role() -> None:
    found = objects(CASES["example"])
    flink = found[("FlinkDeployment", "demo-flink")]["spec"]
    account = found[("ServiceAccount", flink["serviceAccount"])]
    binding = found[("RoleBinding", "demo-flink")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": CLUSTER_ROLE,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "analytics"}
    ]
    # the chart installs the ClusterRole and lets the operator bind it (tests/integration)


def test_model_deployments_leave_their_replicas_to_the_hpa() -> None:
    spec = {**CASES["example"]}
    spec["models"] = [
        {
            "name": "toxicity",
            "task": "multi_label_classification",
            "minReplicas": 2,
            "scaleDownStabilizationSeconds": 15,
        }
    ]
    found = objects(spec)
    deployment = found[("Deployment", "demo-model-toxicity")]
    assert "replicas" not in deployment["spec"]
    hpa = found[("HorizontalPodAutoscaler", "demo-model-toxicity")]["spec"]
    assert hpa["minReplicas"] == 2
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 15
    suspended = objects({**spec, "suspend": True})[("Deployment", "demo-model-toxicity")]
    assert suspended["spec"]["replicas"] == 0


def test_only_enrich_the_gateway_and_prometheus_reach_the_models() -> None:
    found = objects(CASES["external"])  # publishes routes through gateways/public
    policy = found[("NetworkPolicy", "demo-models")]["spec"]
    (selector,) = policy["podSelector"]["matchExpressions"]
    assert selector["values"] == ["model-toxicity"]
    api, metrics = policy["ingress"]
    assert api["ports"] == [{"protocol": "TCP", "port": 8500}]
    assert api["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "streampulse.io/instance": "demo",
                    "app.kubernetes.io/component": "enrich",
                }
            }
        },
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}},
    ]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert metrics["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]


def test_only_the_pipeline_reaches_kafka_and_minio() -> None:
    found = objects(CASES["example"])
    pipeline = {"podSelector": {"matchLabels": {"streampulse.io/instance": "demo"}}}
    for listener in found[("Kafka", "demo")]["spec"]["kafka"]["listeners"]:
        assert listener["networkPolicyPeers"] == [pipeline]
    minio = found[("NetworkPolicy", "demo-minio")]["spec"]
    assert minio["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "minio"
    (rule,) = minio["ingress"]
    assert rule["from"][0] == pipeline
    # every pod that talks to MinIO carries the instance label
    for key in (("FlinkDeployment", "demo-flink"),):
        labels = found[key]["spec"]["podTemplate"]["metadata"]["labels"]
        assert labels["streampulse.io/instance"] == "demo"


def test_policies_can_be_turned_off() -> None:
    found = objects({**CASES["example"], "networkPolicies": {"enabled": False}})
    assert not [k for k in found if k[0] == "NetworkPolicy"]
    assert "networkPolicyPeers" not in found[("Kafka", "demo")]["spec"]["kafka"]["listeners"][0]


def test_no_handler_needs_a_finalizer() -> None:
    """Timers, daemons and deletion handlers make kopf put a finalizer on every StreamPulse."""
    registry = register()
    resource_handlers = [
        *registry._spawning.get_all_handlers(),
        *registry._changing.get_all_handlers(),
    ]
    assert resource_handlers
    assert not [h for h in resource_handlers if getattr(h, "requires_finalizer", False)]
    assert not registry._spawning.get_all_handlers()  # no timers, no daemons


def test_a_stuck_watch_is_reported_after_the_stall_time() -> None:
    health = WatchHealth(stall_after_s=60, resync_stale_after_s=100)
    health.resynced(now=0)
    health.watched("a", "10")
    health.listed("a", "10", now=1)
    assert health.problems(now=2) == []
    health.listed("a", "11", now=10)  # a change the watch has not delivered
    assert health.problems(now=60) == []
    health.watched("a", "11")
    health.resynced(now=20)
    health.listed("a", "11", now=20)
    assert health.problems(now=90) == []
    health.listed("a", "12", now=30)
    health.resynced(now=85)
    assert health.problems(now=85) == []
    (problem,) = health.problems(now=91)
    assert "has not delivered a change of a" in problem


def test_a_resync_that_stopped_is_reported() -> None:
    health = WatchHealth(stall_after_s=60, resync_stale_after_s=40)
    health.resynced(now=0)
    assert health.problems(now=30) == []
    (problem,) = health.problems(now=41)
    assert "no resync finished" in problem
