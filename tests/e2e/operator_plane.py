"""The control plane the operator's e2e tests share: the chart installed with helm, the upstream
CRDs, and a namespace that enforces Pod Security ``restricted``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import ControlPlane, ensure_binaries, wait_until
from tests.harness.operator_runs import MERGE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streampulse-operator"
EXAMPLE: dict[str, Any] = yaml.safe_load((CHART / "examples" / "streampulse.yaml").read_text())
NS = "pipelines"
SP = f"/apis/streampulse.io/v1alpha1/namespaces/{NS}/streampulses"


def crds_dir() -> Path:
    value = os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail("STREAMPULSE_TEST_K8S_CRDS_DIR must name the upstream CRD directory")
    return Path(value)


@contextmanager
def running_plane() -> Iterator[ControlPlane]:
    with ControlPlane(
        ensure_binaries(), controllers=True, kwok_nodes=2, crds_dir=crds_dir()
    ) as plane:
        plane.helm(
            "install",
            "streampulse",
            str(CHART),
            "--namespace",
            "streampulse-system",
            "--create-namespace",
            "--wait=false",
        )
        wait_until(
            lambda: plane.crd_established("streampulses.streampulse.io"),
            timeout=60,
            what="the StreamPulse CRD",
        )
        restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce",)}
        plane.request(
            "POST",
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NS, "labels": restricted},
            },
        )
        wait_until(
            lambda: plane.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default"),
            timeout=60,
            what="the namespace's default ServiceAccount",
        )
        yield plane


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return str(item["status"])
    return None


def spec_change(plane: ControlPlane, name: str, change: dict[str, Any]) -> None:
    plane.request("PATCH", f"{SP}/{name}", {"spec": change}, content_type=MERGE)


def make_lake_volume(plane: ControlPlane, name: str) -> None:
    """A PersistentVolume for one managed MinIO's claim: the plane has no provisioner."""
    plane.request(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": f"/var/lib/{name}"},
            },
        },
    )
