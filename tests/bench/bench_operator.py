"""make bench-operator: the operator against a real control plane (etcd + kube-apiserver).

- apply_to_children_s: from creating the example StreamPulse (its lakehouse external: no
  controllers run here to make MinIO ready) to its first children existing (Kafka, the models);
- dependents_after_kafka_s: from Strimzi's status reporting Kafka ready (written as Strimzi
  writes it) to the workers and the Flink job existing (they wait for Kafka);
- fifty_reconciled_s: from creating 50 StreamPulses to every one's status observing its generation;
- operator_rss_mb: the operator's resident memory after that.
Baseline, same plane and run: creating 50 ConfigMaps directly (what the API server alone costs).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml

from streampulse.local.ports import free_port
from tests.harness.kube import ControlPlane, ensure_binaries, wait_until
from tests.harness.operator_runs import report_ready

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streampulse-operator"
EXAMPLE: dict[str, Any] = yaml.safe_load((CHART / "examples" / "streampulse.yaml").read_text())
NS = "default"
SP = f"/apis/streampulse.io/v1alpha1/namespaces/{NS}/streampulses"
COUNT = 50


APPS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def _first_children(name: str) -> list[str]:
    return [
        *(f"{APPS}/{name}-model-{model['name']}" for model in EXAMPLE["spec"]["models"]),
        f"/apis/kafka.strimzi.io/v1/namespaces/{NS}/kafkas/{name}",
    ]


def _dependents(name: str) -> list[str]:
    return [
        f"{APPS}/{name}-ingest",
        f"{APPS}/{name}-enrich",
        f"/apis/flink.apache.org/v1beta1/namespaces/{NS}/flinkdeployments/{name}-flink",
    ]


def _resource(name: str) -> dict[str, Any]:
    resource = copy.deepcopy(EXAMPLE)
    resource["metadata"] = {"name": name, "namespace": NS}
    resource["spec"]["lakehouse"] = {
        "mode": "External",
        "endpoint": "http://s3.example:9000",
        "credentialsSecretName": "lake",
    }
    return resource


def _reconciled(plane: ControlPlane, name: str) -> bool:
    current = plane.get(f"{SP}/{name}")
    status = (current or {}).get("status") or {}
    return bool(current) and status.get("observedGeneration") == current["metadata"]["generation"]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    crds_dir = os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR")
    if not crds_dir or not Path(crds_dir).is_dir():
        sys.exit("set STREAMPULSE_TEST_K8S_CRDS_DIR to the upstream CRD directory")
    with ControlPlane(ensure_binaries(), crds_dir=Path(crds_dir)) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        wait_until(
            lambda: plane.crd_established("streampulses.streampulse.io"),
            timeout=60,
            what="the StreamPulse CRD",
        )
        started = time.perf_counter()
        for index in range(COUNT):
            plane.request(
                "POST",
                f"/api/v1/namespaces/{NS}/configmaps",
                {"metadata": {"name": f"baseline-{index}"}, "data": {"k": "v"}},
            )
        baseline_s = time.perf_counter() - started

        health = free_port()
        env = plane.env() | {
            "STREAMPULSE_OPERATOR_HEALTH_PORT": str(health),
            "STREAMPULSE_OPERATOR_HEALTH_HOST": "127.0.0.1",
        }
        log = (plane.directory / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "streampulse_operator"], env=env, stdout=log, stderr=log
        )
        try:
            wait_until(lambda: _healthy(health), timeout=60, what="the operator's health endpoint")
            started = time.perf_counter()
            plane.request("POST", SP, _resource("demo"))
            wait_until(
                lambda: all(plane.get(path) for path in _first_children("demo")),
                timeout=120,
                what="the example's first children",
            )
            apply_s = time.perf_counter() - started
            started = time.perf_counter()
            report_ready(plane, NS, "demo", flink=False)
            wait_until(
                lambda: all(plane.get(path) for path in _dependents("demo")),
                timeout=120,
                what="the workers and the Flink job",
            )
            dependents_s = time.perf_counter() - started

            started = time.perf_counter()
            names = [f"bench-{index:02d}" for index in range(COUNT)]
            for name in names:
                plane.request("POST", SP, _resource(name))
            wait_until(
                lambda: all(_reconciled(plane, name) for name in names),
                timeout=600,
                what=f"{COUNT} StreamPulses reconciled",
            )
            fifty_s = time.perf_counter() - started
            rss_mb = _rss_mb(operator.pid)
        finally:
            operator.terminate()
            operator.wait(30)
            log.close()

    print("operator benchmark: real etcd + kube-apiserver, operator as a process")
    print(f"  {'apply -> Kafka and the models exist (s)':<42} {apply_s:>10.2f}")
    print(f"  {'Kafka ready -> workers and Flink exist (s)':<42} {dependents_s:>10.2f}")
    print(f"  {f'{COUNT} StreamPulses reconciled (s)':<42} {fifty_s:>10.2f}")
    print(f"  {'operator RSS (MiB)':<42} {rss_mb:>10.1f}")
    print(f"  {f'baseline: {COUNT} ConfigMaps created (s)':<42} {baseline_s:>10.2f}")
    print(
        orjson.dumps(
            {
                "bench": "operator",
                "apply_to_children_s": round(apply_s, 2),
                "dependents_after_kafka_s": round(dependents_s, 2),
                "fifty_reconciled_s": round(fifty_s, 2),
                "operator_rss_mb": round(rss_mb, 1),
                "baseline": {"fifty_configmaps_s": round(baseline_s, 2)},
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
