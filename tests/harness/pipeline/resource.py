"""The operator's Helm release and the StreamPulse the system test applies.

The node has 2 CPUs, of which the control plane and the add-ons request 900m; what is left is
shared by the operator, the test's infrastructure and every pod of the pipeline, so each asks for
little (a request is only what the scheduler reserves; the limits let a pod use more).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.cluster import Cluster, ClusterError, Progress
from tests.harness.cluster.common import cache_root, run_capture
from tests.harness.images.recipes import IMAGES, REGISTRY, TAG
from tests.harness.pipeline import kube
from tests.harness.pipeline.infra import BUCKET, Infra

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "streampulse-operator"
OPERATOR_NAMESPACE = "streampulse-operator"
RELEASE = "streampulse-operator"
PIPELINE_NAMESPACE = "sp-pipeline"
NAME = "pulse"
LOADED_MODEL = "toxicity"
"""The model with ``minReplicas: 2`` the HPA test loads."""
LOADED_MAX = 4
STABILIZATION_S = 20


def helm_binary(cache_dir: Path | None = None) -> Path:
    helm = cache_root(cache_dir) / "kube-1.37.2" / "bin" / "helm"
    if not helm.is_file():
        raise ClusterError(f"no helm at {helm}: run `make kube`")
    return helm


def helm_install(cluster: Cluster, say: Progress, cache_dir: Path | None = None) -> float:
    """``helm install`` the chart with the locally built operator image; seconds until the
    operator's pod is Ready and its health endpoint answers."""
    started = time.monotonic()
    repository, tag = IMAGES["operator"].tag.rsplit(":", 1)
    kube.apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": OPERATOR_NAMESPACE,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
    }})  # fmt: skip
    argv = [
        str(helm_binary(cache_dir)), "upgrade", "--install", RELEASE, str(CHART),
        f"--kubeconfig={cluster.kubeconfig}", "--namespace", OPERATOR_NAMESPACE,
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=IfNotPresent",
        "--set", "resources.requests.cpu=25m", "--set", "resyncIntervalSeconds=5",
        "--wait", "--timeout", "5m",
    ]  # fmt: skip
    with say.step(f"helm install {RELEASE} ({repository}:{tag})"):
        run_capture(argv, timeout_s=330)
    pod = kube.ready_pod(cluster, OPERATOR_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    path = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}:8080/proxy/healthz"
    kube.until(lambda: cluster.succeeds("get", "--raw", path), 120, "the operator's /healthz")
    return time.monotonic() - started


def _small(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


@dataclass(frozen=True)
class PipelineSpec:
    name: str = NAME
    namespace: str = PIPELINE_NAMESPACE
    checkpoint_s: int = 10

    def manifest(self, infra: Infra, *, suspend: bool = False) -> dict[str, Any]:
        model_resources = _small("25m", "128Mi", "500m", "768Mi")
        models: list[dict[str, Any]] = [
            {
                "name": LOADED_MODEL,
                "task": "multi_label_classification",
                "minReplicas": 2,
                "maxReplicas": LOADED_MAX,
                "targetCPUUtilization": 50,
                "scaleDownStabilizationSeconds": STABILIZATION_S,
                "resources": model_resources,
            },
            *(
                {"name": name, "task": task, "minReplicas": 1, "maxReplicas": 1,
                 "resources": model_resources}
                for name, task in (("ner", "token_classification"),
                                   ("sentiment", "single_label_classification"))
            ),
        ]  # fmt: skip
        return {
            "apiVersion": "streampulse.io/v1alpha1",
            "kind": "StreamPulse",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "suspend": suspend,
                "image": {
                    "repository": f"{REGISTRY}/streampulse",
                    "tag": TAG,
                    "pullPolicy": "IfNotPresent",
                },
                "source": {"endpoints": [infra.replay_endpoint]},
                "kafka": self._kafka(infra),
                "models": models,
                "ingestion": {"resources": _small("25m", "128Mi", "500m", "512Mi")},
                "enrichment": {
                    "replicas": 1,
                    "resources": _small("25m", "128Mi", "500m", "512Mi"),
                },
                "flink": {
                    "image": IMAGES["flink"].tag,
                    "parallelism": 1,
                    "taskSlots": 1,
                    "checkpointIntervalSeconds": self.checkpoint_s,
                    "jobManager": {"cpu": 0.5, "memory": "1024m"},
                    "taskManager": {"cpu": 0.25, "memory": "1024m"},
                },
                "lakehouse": self._lakehouse(infra),
                "trino": {"enabled": False},
            },
        }

    @staticmethod
    def _kafka(infra: Infra) -> dict[str, Any]:
        if not infra.managed:
            return {"mode": "External", "bootstrapServers": infra.bootstrap_servers}
        return {  # one broker by Strimzi, sized for the runner (requests fit 4 vCPUs)
            "mode": "Managed",
            "replicas": 1,
            "storage": {"size": "2Gi"},
            "resources": _small("250m", "1Gi", "1", "2Gi"),
        }

    @staticmethod
    def _lakehouse(infra: Infra) -> dict[str, Any]:
        if not infra.managed:
            return {
                "mode": "External",
                "endpoint": infra.s3_endpoint,
                "credentialsSecretName": infra.credentials_secret,
                "bucket": BUCKET,
            }
        return {"mode": "Managed", "bucket": BUCKET, "storage": {"size": "2Gi"}}
