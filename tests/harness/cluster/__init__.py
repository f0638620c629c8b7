"""A real single-node Kubernetes cluster on this machine, built from Debian packages and the Go
module proxy: the Docker engine, base images, the node image and the cluster (docs/cluster.md).

    cluster = Cluster.up()          # or Cluster.existing(); builds whatever is missing
    cluster.load_image("streampulse/workers:dev")
    cluster.kubectl("apply", "-f", "manifest.yaml")
    cluster.down()
"""

from tests.harness.cluster.bases import BASES, ensure_base, ensure_bases, local_base
from tests.harness.cluster.cluster import Cluster, WaitAborted, down, wait_for
from tests.harness.cluster.common import ClusterError, Progress
from tests.harness.cluster.engine import Engine, ensure_engine, find_engine, stop_engine
from tests.harness.cluster.manifests import NODE_NAME, STORAGE_CLASS
from tests.harness.cluster.nodeimage import ensure_node_image

__all__ = [
    "BASES",
    "NODE_NAME",
    "STORAGE_CLASS",
    "Cluster",
    "ClusterError",
    "Engine",
    "Progress",
    "WaitAborted",
    "down",
    "ensure_base",
    "ensure_bases",
    "ensure_engine",
    "ensure_node_image",
    "find_engine",
    "local_base",
    "stop_engine",
    "wait_for",
]
