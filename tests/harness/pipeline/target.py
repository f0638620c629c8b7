"""Where the system test runs, chosen by ``STREAMPULSE_TEST_CLUSTER_MODE``.

- ``local`` (the default, ``make test-cluster`` here): the project's own single-node cluster
  (``tests.harness.cluster``), the images built on the local bases, Kafka and S3 as test-only
  pods (``kafka.mode``/``lakehouse.mode: External``) and Flink started the way the Flink
  Kubernetes Operator starts it (``FlinkDriver``), because neither Strimzi nor the Flink operator
  can be obtained here.
- ``upstream`` (the GitHub workflow ``.github/workflows/operator-kind.yaml``): a kind cluster the
  workflow created from ``kind-cluster.yaml`` (one node) with metrics-server, Strimzi,
  cert-manager and the Flink Kubernetes Operator installed from their releases; the images built
  on the Dockerfiles' registry bases; Kafka by Strimzi and S3 by the operator's MinIO
  (``Managed``), and the FlinkDeployment reconciled by the Flink operator itself.

The tests and their assertions are the same in both (``tests/system/test_pipeline.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from tests.harness.cluster import Cluster, ClusterError, Progress, ensure_engine
from tests.harness.cluster.common import run_capture

Mode = Literal["local", "upstream"]
MODES: tuple[Mode, ...] = ("local", "upstream")
MODE_VARIABLE = "STREAMPULSE_TEST_CLUSTER_MODE"
KIND_CLUSTER_VARIABLE = "STREAMPULSE_TEST_KIND_CLUSTER"
KIND_CLUSTER = "streampulse"
"""``name`` in ``kind-cluster.yaml``."""

RUNNER_MILLICPU = 4000
"""A GitHub-hosted ``ubuntu-latest`` runner of a public repository: 4 vCPUs."""
UPSTREAM_ADDON_REQUESTS_M: dict[str, int] = {
    "kube-apiserver": 250,
    "kube-controller-manager": 200,
    "kube-scheduler": 100,
    "etcd": 100,
    "CoreDNS (2 replicas)": 200,
    "kindnet": 100,
    "metrics-server (chart default)": 100,
    "Strimzi cluster operator (chart default)": 200,
    "Flink Kubernetes Operator (the workflow's operatorPod.resources)": 100,
    "cert-manager (3 pods, no requests)": 0,
    "local-path provisioner (no requests)": 0,
}
"""CPU requests on the kind node that are not the pipeline's: kubeadm's and kind's defaults,
the charts' defaults, and what the workflow sets (``docs/cluster.md``, section 6)."""


def mode() -> Mode:
    value = os.environ.get(MODE_VARIABLE, "local")
    for known in MODES:
        if value == known:
            return known
    raise ClusterError(f"{MODE_VARIABLE}={value!r}: expected one of {', '.join(MODES)}")


def upstream() -> bool:
    return mode() == "upstream"


def attach_kind(say: Progress) -> Cluster:
    """The kind cluster the workflow created: its kubeconfig (``kind get kubeconfig``), its one
    node container and the host's Docker engine. The test never removes it."""
    name = os.environ.get(KIND_CLUSTER_VARIABLE, KIND_CLUSTER)
    kind, kubectl = shutil.which("kind"), shutil.which("kubectl")
    if kind is None or kubectl is None:
        raise ClusterError("upstream mode needs kind and kubectl on PATH (the workflow installs)")
    nodes = run_capture([kind, "get", "nodes", "--name", name]).stdout.split()
    if len(nodes) != 1:
        raise ClusterError(f"kind cluster {name!r} has nodes {nodes}; kind-cluster.yaml has one")
    config = run_capture([kind, "get", "kubeconfig", "--name", name]).stdout
    server = re.search(r"server:\s*https://127\.0\.0\.1:(\d+)", config)
    if server is None:
        raise ClusterError(f"kind cluster {name!r}: no loopback API server in its kubeconfig")
    home = Path(tempfile.mkdtemp(prefix="streampulse-kind-"))
    (home / "kubeconfig").write_text(config)
    say(f"kind cluster {name}: node {nodes[0]}, API server 127.0.0.1:{server.group(1)}")
    return Cluster(
        name=name,
        engine=ensure_engine(say=say),
        home=home,
        container=nodes[0],
        api_port=int(server.group(1)),
        kubectl_bin=Path(kubectl),
    )
