"""The operator chart as helm sees it: strict lint, and what `helm template` renders."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import ensure_binaries

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "streampulse-operator"


def _helm(*args: str) -> str:
    helm = ensure_binaries().helm
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _rendered(*sets: str) -> list[dict[str, Any]]:
    args = ["template", "streampulse", str(CHART), "--namespace", "streampulse-system"]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(_helm(*args)) if doc]


def test_lint_strict_passes() -> None:
    assert "0 chart(s) failed" in _helm("lint", "--strict", str(CHART))


def test_every_pod_is_restricted_and_bounded() -> None:
    pods = []
    for doc in _rendered():
        if doc["kind"] == "Deployment":
            pods.append(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "Pod":  # the helm test hook
            pods.append(doc["spec"])
    assert len(pods) == 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]) == {"requests", "limits"}


def test_rbac_has_no_wildcards_and_one_active_replica() -> None:
    docs = _rendered()
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_values_schema_rejects_bad_values() -> None:
    helm = ensure_binaries().helm
    result = subprocess.run(
        [str(helm), "template", "x", str(CHART), "--set", "healthPort=not-a-port"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
