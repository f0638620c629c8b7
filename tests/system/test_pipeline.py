"""The pipeline as real pods on the real single-node cluster (issue 14, item 5; docs/cluster.md).

The project's images are built from this clone and loaded into the node with the test-only ones
(Kafka, S3, replay). The chart installs the operator; a StreamPulse in a namespace enforcing Pod
Security ``restricted`` runs the models, ingest and enrich; the Flink job runs in Flink's native
Kubernetes application mode from the rendered FlinkDeployment. The tests run in order on one
stage, each asserting one outcome; the figures go to ``test-artifacts/cluster.json``, which
``make test-cluster`` prints as a table and one JSON line.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.harness.pipeline import checks, kube, lifecycle, local
from tests.harness.pipeline.infra import release_replay
from tests.harness.pipeline.resource import (
    LOADED_MODEL,
    OPERATOR_NAMESPACE,
    RELEASE,
    helm_install,
)
from tests.harness.pipeline.stage import Stage, stage

pytestmark = [pytest.mark.system, pytest.mark.timeout(3000)]

RAW, ENRICHED = "bluesky.stream.raw", "bluesky.stream.enriched"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    crds = Path(os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR", "../shared/k8s-crds"))
    with stage(tmp_path_factory.mktemp("pipeline"), crds) as staged:
        yield staged


def _distinct_posts(dump: local.TopicDump, topic: str) -> set[str]:
    return {
        str(json.loads(base64.b64decode(r["value"]))["event_id"])
        for r in dump.records
        if r["topic"] == topic
        and json.loads(base64.b64decode(r["value"])).get("collection") == "app.bsky.feed.post"
        and json.loads(base64.b64decode(r["value"])).get("text")
    }


def test_project_images_are_built_from_this_clone_and_loaded(run: Stage) -> None:
    assert set(run.built) == {"operator", "workers", "models", "flink"}
    listed = run.cluster.exec_node("crictl", "images", "-o", "json").stdout
    tags = {t for image in orjson.loads(listed)["images"] for t in image.get("repoTags") or []}
    for result in run.built.values():
        assert result.tag in tags or f"docker.io/{result.tag}" in tags


def test_the_chart_runs_the_operator_under_its_service_account(run: Stage) -> None:
    seconds = helm_install(run.cluster, run.say)
    run.details["operator_ready_s"] = round(seconds, 1)
    (pod,) = kube.pods(run.cluster, OPERATOR_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    assert pod["spec"]["serviceAccountName"] == RELEASE
    assert pod["spec"]["containers"][0]["image"] == run.built["operator"].tag
    assert kube.ready(pod)


def test_a_privileged_bare_pod_is_refused(run: Stage) -> None:
    kube.apply(run.cluster, *run.pipeline_namespace)
    status, message = checks.privileged_pod_status(
        run.cluster, run.spec.namespace, run.workers_image
    )
    run.results["privileged_pod_refused"] = status == 403
    assert status == 403, message
    assert 'violates PodSecurity "restricted:latest"' in message


def test_data_flows_end_to_end_with_exact_counts(run: Stage) -> None:
    applied = time.monotonic()
    kube.apply(run.cluster, run.spec.manifest(run.infra))
    run.driver.start()
    run.driver.wait_running(timeout_s=600)
    release_replay(run.cluster, run.infra)
    with local.cluster_lakehouse(run.cluster, run.infra) as lakehouse:
        kube.until(
            lambda: (
                "enriched_posts" in lakehouse.tables()
                and lakehouse.read("enriched_posts").num_rows > 0
            ),
            600,
            "the first rows of enriched_posts",
            every=3,
        )
        run.results["pipeline_ready_s"] = round(time.monotonic() - applied, 1)
        rows = kube.until(
            lambda: (n := lakehouse.read("enriched_posts").num_rows) >= len(run.posts) and n,
            300,
            f"{len(run.posts)} rows in enriched_posts",
            every=3,
        )
        ids = set(lakehouse.read("enriched_posts", ["event_id"]).column("event_id").to_pylist())
    run.results["paimon_rows"] = rows
    dump = local.dump_topics(run.cluster, run.infra, [RAW, ENRICHED])
    sent, enriched = _distinct_posts(dump, RAW), _distinct_posts(dump, ENRICHED)
    run.results["posts_sent"] = len(sent)
    run.results["posts_enriched"] = len(enriched)
    run.details["posts_in_capture"] = len(run.posts)
    run.details["enriched_records_with_resends"] = dump.count(ENRICHED)
    run.details["node_cpu_requests_m"] = checks.node_cpu_requests_m(run.cluster)
    run.observe_pods()
    assert sent == run.posts
    assert enriched == run.posts
    assert rows == len(run.posts)
    assert ids == run.posts


def test_aggregates_equal_what_the_local_stack_computes(run: Stage) -> None:
    run.results["aggregates_equal_local"] = False
    dump = local.dump_topics(run.cluster, run.infra, [RAW, ENRICHED])
    workdir = run.workdir / "local"
    with (
        local.cluster_lakehouse(run.cluster, run.infra) as cluster_side,
        local.local_job(dump, workdir, run.cache_dir, run.spec.checkpoint_s * 1000, 1,
                        run.replay_rate) as local_side,
    ):  # fmt: skip
        tables = local.wait_equal(cluster_side, local_side, len(run.posts), timeout_s=300)
    run.details["tables_compared"] = {name: len(rows) for name, rows in tables.items()}
    run.results["aggregates_equal_local"] = True
    assert sum(len(rows) for name, rows in tables.items() if name != "enriched_posts") > 0


def test_network_policies_let_only_enrich_reach_the_models(run: Stage) -> None:
    url = f"http://{run.spec.name}-model-{LOADED_MODEL}.{run.spec.namespace}.svc:8500/readyz"
    allowed = checks.reach(run.cluster, run.spec.namespace, run.workers_image,
                           run.enrich_labels, url)  # fmt: skip
    denied = checks.reach(run.cluster, run.spec.namespace, run.workers_image,
                          {"app": "outsider"}, url)  # fmt: skip
    run.details["netpol_enrich_labels"] = allowed
    run.details["netpol_other_pod"] = denied[:60]
    run.results["network_policy_enforced"] = allowed == "http 200" and denied.startswith("refused")
    assert allowed == "http 200"
    assert denied.startswith("refused")


def test_the_hpa_scales_a_model_above_its_minimum_and_back(run: Stage) -> None:
    name = f"{run.spec.name}-model-{LOADED_MODEL}"
    url = f"http://{name}.{run.spec.namespace}.svc:8500/v1/models/{LOADED_MODEL}:predict"
    hpa = checks.load_until_scaled(run.cluster, run.spec.namespace, run.workers_image,
                                   run.enrich_labels, name, url, run.say,
                                   run.observe_pods)  # fmt: skip
    run.observe_pods()
    run.results["hpa_max_replicas"] = hpa.max_replicas
    run.results["hpa_back_to_min"] = hpa.back_to_min
    run.details["hpa_replicas_seen"] = hpa.seen[-1]
    assert hpa.max_replicas > 2
    assert hpa.back_to_min


def test_suspend_and_resume_with_real_pods(run: Stage) -> None:
    cluster, ns, name = run.cluster, run.spec.namespace, run.spec.name
    model = f"{name}-model-{LOADED_MODEL}"
    before = lifecycle.deployment_replicas(cluster, ns, model)[0]
    job = run.driver.wait_running(timeout_s=60)
    lifecycle.patch_suspend(cluster, ns, name, True)
    started = time.monotonic()
    kube.until(lambda: not lifecycle.pipeline_pods(cluster, ns, name), 300,
               "every pod of the pipeline to stop", every=2)  # fmt: skip
    run.details["suspended_s"] = round(time.monotonic() - started, 1)
    lifecycle.patch_suspend(cluster, ns, name, False)
    started = time.monotonic()

    def back() -> bool:
        wanted = {model: before, f"{name}-ingest": 1, f"{name}-enrich": 1}
        return all(
            lifecycle.deployment_replicas(cluster, ns, d) == (w, w) for d, w in wanted.items()
        )

    kube.until(back, 300, f"{model} ({before}), ingest and enrich back and Ready", every=2)
    resumed = run.driver.wait_running(timeout_s=600)
    run.details["resumed_s"] = round(time.monotonic() - started, 1)
    run.observe_pods()
    assert resumed == job  # Kubernetes HA: the same job, resumed from its checkpoint


def test_every_rendered_pod_was_admitted_under_restricted(run: Stage) -> None:
    namespace = kube.get(run.cluster, "namespace", run.spec.namespace) or {}
    labels = namespace.get("metadata", {}).get("labels", {})
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    run.observe_pods()
    refused = [
        e for e in kube.events(run.cluster, run.spec.namespace)
        if e.get("reason") == "FailedCreate" and "PodSecurity" in e.get("message", "")
    ]  # fmt: skip
    pods = list(run.pods_seen.values())
    run.results["pods_admitted_restricted"] = len(pods)
    run.details["pods_by_component"] = _by_component(pods)
    assert refused == []
    assert all(checks.pod_complies(p) for p in pods)
    assert {"ingest", "enrich", "flink"} <= set(run.details["pods_by_component"])


def test_deletion_collects_every_object(run: Stage) -> None:
    cluster, ns, name = run.cluster, run.spec.namespace, run.spec.name
    cluster.kubectl("delete", "streampulse", name, "-n", ns, "--wait=true", timeout_s=300)
    flink = f"{name}-flink"

    managed = run.infra.managed

    def collected() -> bool:
        return not lifecycle.leftovers(cluster, ns, name, flink, managed=managed)

    kube.until(collected, 300, "every object of the pipeline to be collected", every=3)
    remaining = lifecycle.leftovers(cluster, ns, name, flink, managed=managed)
    run.results["leftover_objects"] = len(remaining)
    run.details["claims_kept"] = lifecycle.kept_claims(cluster, ns, name)
    assert remaining == []
    # kept on purpose only with managed storage (docs/operator.md, "Uninstalling")
    assert bool(run.details["claims_kept"]) == managed


def _by_component(pods: list[kube.Obj]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in pods:
        component = pod["metadata"]["labels"].get("app.kubernetes.io/component", "?")
        out[component] = out.get(component, 0) + 1
    return dict(sorted(out.items()))
