"""The operator chart as helm sees it: strict lint, and what `helm template` renders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streampulse_operator.kinds import CHILD_KINDS, LISTED_KINDS
from streampulse_operator.manifests.flink import CLUSTER_ROLE
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


def _rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


VERBS = ("list", "create", "patch", "delete")


def test_the_operator_may_do_exactly_what_it_does() -> None:
    """list, create and patch (server-side apply) and delete on every listed child kind;
    Secrets: create only (never read); the Flink job's ClusterRole: bind only; nothing else on
    children."""
    roles = {d["metadata"]["name"]: d for d in _rendered() if d["kind"] == "ClusterRole"}
    operator, flink = roles["streampulse"], roles[CLUSTER_ROLE]
    granted = _rules(operator)
    for kind in LISTED_KINDS:
        for verb in VERBS:
            assert (kind.group, kind.plural, verb) in granted, (kind, verb)
    children = {(k.group, k.plural) for k in CHILD_KINDS}
    extra = {(g, r, v) for g, r, v in granted if (g, r) in children} - {
        (k.group, k.plural, v) for k in LISTED_KINDS for v in VERBS
    }
    assert extra == {("", "secrets", "create")}
    assert ("rbac.authorization.k8s.io", "clusterroles", "bind") in granted
    (bind,) = [r for r in operator["rules"] if "bind" in r["verbs"]]
    assert bind["resourceNames"] == [CLUSTER_ROLE]
    assert ("streampulse.io", "streampulses/finalizers", "update") in granted
    assert not {(g, r, v) for g, r, v in granted if r == "secrets" and v != "create"}
    # Flink's native Kubernetes mode: task manager pods and HA ConfigMaps
    for resource in ("pods", "configmaps"):
        for verb in ("get", "list", "watch", "create", "update", "delete"):
            assert ("", resource, verb) in _rules(flink)


def test_watch_namespaces_grant_rights_in_those_namespaces_only() -> None:
    docs = _rendered("watchNamespaces={team-a,team-b}")
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["name"] == "streampulse"
        (subject,) = binding["subjects"]
        assert (subject["name"], subject["namespace"]) == ("streampulse", "streampulse-system")
    (everywhere,) = [d for d in _rendered() if d["kind"] == "ClusterRoleBinding"]
    assert everywhere["roleRef"]["name"] == "streampulse"


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


DASHBOARDS = CHART / "dashboards"


def _dashboard_config_maps(*sets: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in _rendered(*sets)
        if doc["kind"] == "ConfigMap" and "grafana_dashboard" in doc["metadata"]["labels"]
    }


def test_every_dashboard_renders_as_a_labelled_config_map() -> None:
    maps = _dashboard_config_maps()
    files = sorted(DASHBOARDS.glob("*.json"))
    assert len(files) == 6
    assert sorted(maps) == [f"streampulse-dashboard-{f.stem}" for f in files]
    for path in files:
        config_map = maps[f"streampulse-dashboard-{path.stem}"]
        meta = config_map["metadata"]
        assert meta["namespace"] == "streampulse-system"
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert meta["annotations"] == {"grafana_folder": "StreamPulse"}
        assert config_map["data"].keys() == {path.name}
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


def test_dashboards_follow_their_values() -> None:
    assert _dashboard_config_maps("grafana.dashboards.enabled=false") == {}
    maps = _dashboard_config_maps(
        "grafana.dashboards.namespace=monitoring", "grafana.dashboards.folder="
    )
    assert len(maps) == 6
    for config_map in maps.values():
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert "annotations" not in config_map["metadata"]


def test_values_schema_rejects_unknown_dashboard_settings() -> None:
    helm = ensure_binaries().helm
    for value in ("grafana.dashboards.enabled=maybe", "grafana.dashboards.colour=blue"):
        result = subprocess.run(
            [str(helm), "template", "x", str(CHART), "--set", value],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0, value
        assert "values don't meet the specifications of the schema" in result.stderr, value
