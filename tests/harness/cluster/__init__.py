"""A real single-node Kubernetes cluster on this machine, built from Debian packages and the Go
module proxy: the Docker engine, base images, the node image and the cluster (docs/cluster.md)."""

from tests.harness.cluster.bases import BASES, ensure_base, ensure_bases, local_base
from tests.harness.cluster.common import ClusterError, Progress
from tests.harness.cluster.engine import Engine, ensure_engine, find_engine, stop_engine

__all__ = [
    "BASES",
    "ClusterError",
    "Engine",
    "Progress",
    "ensure_base",
    "ensure_bases",
    "ensure_engine",
    "find_engine",
    "local_base",
    "stop_engine",
]
