"""Admission, NetworkPolicy and autoscaling checks against the running pipeline.

Probe and load pods are bare, restricted pods of the workers image in the pipeline's namespace;
their Python loops are bounded in count and time and end by themselves. Every connection stays
inside the cluster's pod and Service networks on this machine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.harness.cluster import Cluster, Progress
from tests.harness.pipeline import kube
from tests.harness.pipeline.infra import APP_LABEL

MODEL_PORT = 8500
PROBE = """
import json, sys, time, urllib.request, urllib.error
url, attempts = sys.argv[1], int(sys.argv[2])
outcome = "unknown"
for _ in range(attempts):
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            outcome = f"http {answer.status}"
            break
    except urllib.error.HTTPError as exc:
        outcome = f"http {exc.code}"
        break
    except OSError as exc:
        outcome = f"refused: {exc}"
        time.sleep(1)
print(json.dumps({"outcome": outcome}))
"""
LOAD = """
import json, sys, threading, time, urllib.request
url, seconds, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
body = json.dumps({"inputs": ["what a wonderful, terrible, ordinary day in Paris"] * 16}).encode()
deadline, sent, failed = time.monotonic() + seconds, [0], [0]
def loop():
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).read()
            sent[0] += 1
        except OSError:
            failed[0] += 1
            time.sleep(0.2)
threads = [threading.Thread(target=loop) for _ in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"sent": sent[0], "failed": failed[0]}))
"""


def bare_pod(
    namespace: str, name: str, image: str, labels: dict[str, str], argv: list[str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        # the test's own pod, whatever labels it borrows (not counted as the pipeline's)
        "metadata": {"name": name, "namespace": namespace, "labels": {**labels, APP_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": kube.restricted_pod(),
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": argv,
                    "securityContext": kube.restricted_container(),
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "300m", "memory": "256Mi"},
                    },
                }
            ],
        },
    }


def privileged_pod_status(cluster: Cluster, namespace: str, image: str) -> tuple[int, str]:
    """POST a privileged bare Pod; (HTTP status, message) of the API server's answer."""
    pod = bare_pod(namespace, "privileged-probe", image, {}, ["sleep", "1"])
    container = pod["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "runAsUser": 0}
    pod["spec"]["securityContext"] = {}
    status, body = cluster.api("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    if status == 201:  # never expected: remove it again
        cluster.kubectl("delete", "pod", "-n", namespace, "privileged-probe", "--wait=false")
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    return status, message


def run_pod(cluster: Cluster, pod: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Create a bare pod, wait for it to finish, return the JSON its last line printed."""
    meta = pod["metadata"]
    kube.apply(cluster, pod)
    try:

        def finished() -> str | None:
            found = kube.get(cluster, "pod", meta["name"], "-n", meta["namespace"])
            phase = (found or {}).get("status", {}).get("phase")
            return phase if phase in {"Succeeded", "Failed"} else None

        phase = kube.until(finished, timeout_s, f"pod {meta['name']} to finish", every=2)
        logs = cluster.kubectl("logs", "-n", meta["namespace"], meta["name"]).stdout
        lines = [line for line in logs.splitlines() if line.startswith("{")]
        if phase != "Succeeded" or not lines:
            raise AssertionError(f"pod {meta['name']} {phase}: {logs[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    finally:
        cluster.kubectl("delete", "pod", "-n", meta["namespace"], meta["name"], "--wait=false")


def reach(cluster: Cluster, namespace: str, image: str, labels: dict[str, str], url: str) -> str:
    """What a pod with ``labels`` gets from ``url``: ``http <status>`` or ``refused: ...``."""
    name = f"netpol-probe-{uuid.uuid4().hex[:6]}"
    pod = bare_pod(namespace, name, image, labels, ["python3", "-c", PROBE, url, "5"])
    return str(run_pod(cluster, pod, 180)["outcome"])


@dataclass
class HpaRun:
    """Replica counts the HPA set while and after the load ran."""

    seen: list[tuple[float, int]] = field(default_factory=list)
    max_replicas: int = 0
    back_to_min: bool = False
    load: dict[str, Any] = field(default_factory=dict)


def hpa_replicas(cluster: Cluster, namespace: str, name: str) -> tuple[int, int, int]:
    """(current, desired, minReplicas) of an HPA."""
    hpa = kube.get(cluster, "hpa", name, "-n", namespace) or {}
    status = hpa.get("status", {})
    return (
        int(status.get("currentReplicas", 0)),
        int(status.get("desiredReplicas", 0)),
        int(hpa.get("spec", {}).get("minReplicas", 0)),
    )


def load_until_scaled(
    cluster: Cluster,
    namespace: str,
    image: str,
    labels: dict[str, str],
    hpa: str,
    url: str,
    say: Progress,
    observe: Callable[[], object],
    timeout_s: float = 420,
) -> HpaRun:
    """Load the model behind ``url`` from a pod the NetworkPolicy admits until the HPA raises
    its replicas above the minimum, stop the load, then wait until the HPA is back at its
    minimum. ``observe`` is called at every look (it records the pods the HPA started)."""
    run = HpaRun()
    name = f"hpa-load-{uuid.uuid4().hex[:6]}"
    seconds = int(timeout_s)
    pod = bare_pod(namespace, name, image, labels, ["python3", "-c", LOAD, url, str(seconds), "3"])
    kube.apply(cluster, pod)
    started = time.monotonic()

    def scaled() -> bool:
        observe()
        current, desired, minimum = hpa_replicas(cluster, namespace, hpa)
        run.seen.append((round(time.monotonic() - started, 1), current))
        run.max_replicas = max(run.max_replicas, current)
        return current > minimum and desired <= current

    try:
        kube.until(scaled, timeout_s, f"HPA {hpa} to scale above its minimum", every=5)
        say(f"HPA {hpa}: {run.max_replicas} replicas after {time.monotonic() - started:.0f}s")
    finally:
        cluster.kubectl("delete", "pod", "-n", namespace, name, "--grace-period=1", "--wait=true")

    def back() -> bool:
        observe()
        current, _, minimum = hpa_replicas(cluster, namespace, hpa)
        run.seen.append((round(time.monotonic() - started, 1), current))
        run.max_replicas = max(run.max_replicas, current)
        return current == minimum

    run.back_to_min = kube.until(back, 300, f"HPA {hpa} back at its minimum", every=5)
    say(f"HPA {hpa}: back at its minimum after {time.monotonic() - started:.0f}s")
    return run


def pod_complies(pod: dict[str, Any]) -> bool:
    """Whether a pod's spec holds what Pod Security ``restricted`` asks (and it was admitted)."""
    spec = pod["spec"]
    pod_context = spec.get("securityContext") or {}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if not (
            non_root is True
            and context.get("allowPrivilegeEscalation") is False
            and "ALL" in (context.get("capabilities") or {}).get("drop", [])
            and seccomp.get("type") in {"RuntimeDefault", "Localhost"}
            and not context.get("privileged")
        ):
            return False
    return True


def cpu_millis(quantity: str) -> int:
    """A CPU quantity (``250m``, ``0.5``, ``2``) in millicores."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return round(float(quantity) * 1000)


def node_cpu_requests_m(cluster: Cluster) -> int:
    """What the scheduler has reserved on the node: the CPU requests of every pod that has not
    finished, in every namespace (init containers aside)."""
    total = 0
    for pod in kube.items(cluster, "pods", "--all-namespaces"):
        if pod.get("status", {}).get("phase") in {"Succeeded", "Failed"}:
            continue
        for container in pod["spec"]["containers"]:
            requested = (container.get("resources") or {}).get("requests") or {}
            total += cpu_millis(str(requested.get("cpu", "0")))
    return total
