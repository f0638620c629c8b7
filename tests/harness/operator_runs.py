"""The operator as a process against a real control plane, for the e2e tests.

- ``OperatorRun``: ``python -m streampulse_operator`` authenticated as the chart's ServiceAccount
  (so it runs with exactly the RBAC the chart grants), its log in the plane's directory and,
  optionally, its liveness endpoint on a free port;
- ``report_ready``: Strimzi's and the Flink operator's status written the way those operators
  write it (their controllers cannot run here), for the current generation of each object;
- ``FreezingProxy``: a TCP proxy in front of the API server that can freeze every connection open
  at that moment (a half-open connection: nothing arrives, nothing fails) while new ones work.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from streampulse.local.ports import free_port
from tests.harness.kube import ControlPlane

MERGE = "application/merge-patch+json"
OPERATOR_NAMESPACE = "streampulse-system"
OPERATOR_ACCOUNT = "streampulse"


def service_account_kubeconfig(plane: ControlPlane, name: str, server: str | None = None) -> Path:
    """A kubeconfig authenticating as the chart's ServiceAccount (optionally via ``server``)."""
    token = plane.kubectl(
        "create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h"
    ).strip()
    config = json.loads(plane.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "operator"
    if server is not None:
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
    path = plane.directory / f"{name}-kubeconfig"
    path.write_text(json.dumps(config))
    return path


class OperatorRun:
    """One operator process; ``with OperatorRun(plane, "name") as run: ...``."""

    def __init__(
        self,
        plane: ControlPlane,
        name: str,
        *,
        server: str | None = None,
        health: bool = False,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.plane = plane
        self.name = name
        self.server = server
        self.health_port = free_port() if health else 0
        self.settings = settings or {}
        self.log = plane.directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OperatorRun:
        env = self.plane.env() | {
            "KUBECONFIG": str(service_account_kubeconfig(self.plane, self.name, self.server)),
            "STREAMPULSE_OPERATOR_HEALTH_HOST": "127.0.0.1",
            "STREAMPULSE_OPERATOR_HEALTH_PORT": str(self.health_port),
            "STREAMPULSE_OPERATOR_RESYNC_INTERVAL_S": "2",
            **self.settings,
        }
        sink = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streampulse_operator"], env=env, stdout=sink, stderr=sink
        )
        sink.close()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the operator exited ({code}):\n{tail}")

    def healthz(self) -> int:
        """The liveness endpoint's HTTP status (kopf runs the probes behind it)."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


def _patch_status(plane: ControlPlane, path: str, status: dict[str, Any]) -> None:
    obj = plane.request("GET", path)
    status = {"observedGeneration": obj["metadata"].get("generation", 1), **status}
    plane.request("PATCH", f"{path}/status", {"status": status}, content_type=MERGE)


def report_ready(plane: ControlPlane, namespace: str, name: str, *, flink: bool = True) -> None:
    """Strimzi's Kafka and topics Ready, and (if it exists) the Flink job STABLE and RUNNING."""
    strimzi = f"/apis/kafka.strimzi.io/v1/namespaces/{namespace}"
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    _patch_status(plane, f"{strimzi}/kafkas/{name}", ready)
    for topic in ("raw", "enriched", "dlq"):
        _patch_status(plane, f"{strimzi}/kafkatopics/{name}-{topic}", ready)
    if flink:
        report_flink(plane, namespace, name, "STABLE", "RUNNING")


def report_flink(plane: ControlPlane, namespace: str, name: str, lifecycle: str, job: str) -> None:
    path = f"/apis/flink.apache.org/v1beta1/namespaces/{namespace}/flinkdeployments/{name}-flink"
    _patch_status(plane, path, {"lifecycleState": lifecycle, "jobStatus": {"state": job}})


class FreezingProxy:
    """TCP proxy to ``target_port`` on loopback; ``freeze()`` stalls the open connections."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._connections: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def freeze(self) -> int:
        """Stop forwarding on every connection open now; returns how many were frozen."""
        with self._lock:
            for _, _, frozen in self._connections:
                frozen.set()
            return len(self._connections)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for client, upstream, _ in self._connections:
                client.close()
                upstream.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            frozen = threading.Event()
            with self._lock:
                self._connections.append((client, upstream, frozen))
            threading.Thread(
                target=self._pump, args=(client, upstream, frozen), daemon=True
            ).start()

    def _pump(
        self, client: socket.socket, upstream: socket.socket, frozen: threading.Event
    ) -> None:
        sockets = [client, upstream]
        try:
            while not self._closed.is_set():
                if frozen.is_set():  # half-open: keep both ends open, move nothing
                    self._closed.wait(1)
                    continue
                readable, _, _ = select.select(sockets, [], [], 0.5)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            return
        finally:
            if not frozen.is_set():
                client.close()
                upstream.close()
