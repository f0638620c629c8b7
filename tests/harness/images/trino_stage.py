"""The Trino image's staged inputs: what ``streampulse local fetch-trino`` puts into the cache.

Trino's server (``io.trino:trino-server`` from Maven Central, unpacked and pruned to the iceberg
and tpch plugins) and the Iceberg REST catalog (its jars and compiled class) are the very files
the local Trino runs from, so the image and the integration tests read the tables with the same
builds. ``operator/Dockerfile.trino`` copies them from ``stage-trino/``.
"""

from __future__ import annotations

from pathlib import Path

from streampulse.local.iceberg_rest import ensure_iceberg_rest
from streampulse.local.trino import ensure_trino
from streampulse.settings import TrinoSettings
from tests.harness.cluster.common import ClusterError, Progress, cache_root
from tests.harness.images.staging import dockerfile_arg


def stage_trino(dockerfile: Path, cache_dir: Path | None, say: Progress) -> dict[str, Path]:
    """The context paths of the Trino image's inputs, fetched into the cache if missing."""
    version = TrinoSettings().version
    pinned = dockerfile_arg(dockerfile, "TRINO_VERSION")
    if pinned != version:
        raise ClusterError(f"{dockerfile.name} expects Trino {pinned}, the settings pin {version}")
    root = cache_root(cache_dir)
    with say.step(f"Trino {version} and the Iceberg REST catalog (Maven Central)"):
        server = ensure_trino(root, version, progress=say)
        rest = ensure_iceberg_rest(root)
    return {
        "stage-trino/trino-server": server,
        "stage-trino/iceberg-rest/libs": rest.libs,
        "stage-trino/iceberg-rest/classes": rest.classes,
    }
