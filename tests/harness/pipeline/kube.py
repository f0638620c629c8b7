"""kubectl helpers over :class:`Cluster`: JSON reads, applies, waits, exec and port-forward."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import yaml

from tests.harness.cluster import Cluster, ClusterError, wait_for

T = TypeVar("T")
Obj = dict[str, Any]


def get(cluster: Cluster, *args: str) -> Obj | None:
    """``kubectl get <args> -o json``; None when it is not found."""
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise ClusterError(f"kubectl get {' '.join(args)}: {proc.stderr.strip()}")
    found: Obj = json.loads(proc.stdout)
    return found


def items(cluster: Cluster, *args: str) -> list[Obj]:
    """The items of a ``kubectl get`` list (empty when there are none)."""
    listed = get(cluster, *args)
    return list(listed.get("items", [])) if listed else []


def apply(cluster: Cluster, *objects: Mapping[str, Any], server_side: bool = False) -> None:
    text = yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)
    extra = ["--server-side", "--field-manager=streampulse-system-test"] if server_side else []
    cluster.kubectl("apply", *extra, "-f", "-", input_text=text)


def until(probe: Callable[[], T | None], timeout_s: float, what: str, every: float = 1.0) -> T:
    """:func:`wait_for` with a shorter signature; the probe's truthy answer is returned."""
    return wait_for(probe, timeout_s=timeout_s, what=what, every=every)


def rollout(cluster: Cluster, namespace: str, what: str, timeout_s: float = 300) -> None:
    until(
        lambda: cluster.succeeds("-n", namespace, "rollout", "status", what, "--timeout=10s"),
        timeout_s,
        f"{what} in {namespace} to roll out",
    )


def pods(cluster: Cluster, namespace: str, selector: str = "") -> list[Obj]:
    args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
    return items(cluster, *args)


def ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    running = pod.get("status", {}).get("phase") == "Running"
    deleting = "deletionTimestamp" in pod.get("metadata", {})
    return (
        running
        and not deleting
        and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    )


def ready_pod(cluster: Cluster, namespace: str, selector: str, timeout_s: float = 300) -> str:
    """The name of a Ready pod matching ``selector``, waiting for one."""

    def probe() -> str | None:
        found = [p for p in pods(cluster, namespace, selector) if ready(p)]
        return str(found[0]["metadata"]["name"]) if found else None

    return until(probe, timeout_s, f"a Ready pod {selector} in {namespace}", every=2)


def exec_python(
    cluster: Cluster, namespace: str, pod: str, code: str, timeout_s: float = 120
) -> str:
    """Run ``python3 -`` in a pod with ``code`` on stdin; its stdout."""
    proc = cluster.kubectl(
        "exec", "-i", "-n", namespace, pod, "--", "python3", "-",
        input_text=code, timeout_s=timeout_s,
    )  # fmt: skip
    return proc.stdout


def events(cluster: Cluster, namespace: str) -> list[Obj]:
    return items(cluster, "events", "-n", namespace)


@contextlib.contextmanager
def port_forward(
    cluster: Cluster, namespace: str, target: str, port: int, timeout_s: float = 60
) -> Iterator[int]:
    """``kubectl port-forward <target> :<port>`` on 127.0.0.1; yields the local port."""
    proc = subprocess.Popen(
        [str(cluster.kubectl_bin), f"--kubeconfig={cluster.kubeconfig}", "port-forward",
         "-n", namespace, "--address", "127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            if found:
                yield int(found.group(1))
                return
            if not line or time.monotonic() > deadline:
                raise ClusterError(f"port-forward to {namespace}/{target} failed: {line.strip()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def restricted_container() -> Obj:
    """What Pod Security ``restricted`` asks of a container (and a read-only root)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod(uid: int = 10001) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def names(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(str(o["metadata"]["name"]) for o in objects)
