"""The Gateway API CRDs (``sigs.k8s.io/gateway-api``, standard channel) from the Go module proxy:
the schema the operator's HTTPRoutes are checked against, and CRDs the control plane installs.

``ensure_gateway_api_crds()`` copies them into ``<cache>/gateway-api-<version>/crds`` once; the
Makefile points ``STREAMPULSE_TEST_GATEWAY_API_CRDS_DIR`` there."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.harness.kube import versions
from tests.harness.kube.build import (
    default_cache_dir,
    go_binary,
    go_env,
    locked,
    module_info,
)

CRDS = ("gatewayclasses", "gateways", "httproutes", "referencegrants")


def gateway_api_crds_dir(cache_dir: Path | None = None) -> Path:
    home = (cache_dir or default_cache_dir()) / f"gateway-api-{versions.GATEWAY_API}"
    return home / "crds"


def ensure_gateway_api_crds(cache_dir: Path | None = None) -> Path:
    """The CRD directory, filled from the module's ``config/crd/standard`` when empty."""
    target = gateway_api_crds_dir(cache_dir)
    wanted = [f"gateway.networking.k8s.io_{name}.yaml" for name in CRDS]
    if all((target / name).is_file() for name in wanted):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent / ".lock"):
        log = target.parent / "download.log"
        info = module_info(
            go_binary(), go_env(), log, "sigs.k8s.io/gateway-api", versions.GATEWAY_API
        )
        source = Path(info["Dir"]) / "config" / "crd" / "standard"
        target.mkdir(exist_ok=True)
        for name in wanted:
            shutil.copyfile(source / name, target / name)
    return target
