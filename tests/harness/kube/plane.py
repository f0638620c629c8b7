"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and, on request,
kube-controller-manager, kube-scheduler and kwok with fake nodes.

    with ControlPlane(ensure_binaries(), controllers=True, kwok_nodes=1, crds_dir=d) as plane:
        plane.kubectl("get", "nodes")
        plane.request("GET", "/api/v1/namespaces")

Every process runs in its own session with its log in the plane's temporary directory; ``stop``
ends them all (newest first) and removes the directory.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from streampulse.local.ports import free_port
from tests.harness.kube import components as c
from tests.harness.kube.build import Binaries
from tests.harness.kube.pki import Pki, make_pki
from tests.harness.kube.process import ManagedProcess, StartupError, wait_until


class ApiError(RuntimeError):
    """The API server answered with an error status; ``body`` is its Status object."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class ControlPlane:
    """Start with ``start()`` or ``with``; stop with ``stop()`` (idempotent)."""

    def __init__(
        self,
        binaries: Binaries,
        *,
        controllers: bool = False,
        kwok_nodes: int = 0,
        crds_dir: Path | None = None,
        kubectl: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        """``controllers`` runs kube-controller-manager and kube-scheduler; ``kwok_nodes`` > 0
        runs kwok and registers that many fake nodes; ``crds_dir`` is installed at start."""
        self.binaries = binaries
        self.controllers = controllers
        self.kwok_nodes = kwok_nodes
        self.crds_dir = crds_dir
        self.kubectl_path = kubectl or shutil.which("kubectl") or "/usr/bin/kubectl"
        self.timeout = timeout
        self.startup_seconds = 0.0
        self.installed_crds: list[str] = []
        self.node_names: list[str] = []
        self._dir: Path | None = None
        self._pki: Pki | None = None
        self._port = 0
        self._processes: list[ManagedProcess] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self._dir is not None:
            raise RuntimeError("control plane already started")
        if self.crds_dir is not None and not self.crds_dir.is_dir():
            raise FileNotFoundError(f"CRD directory {self.crds_dir} does not exist")
        started = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="streampulse-kube-"))
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise RuntimeError("control plane is not running")
        return self._dir

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def env(self) -> dict[str, str]:
        """Environment for kubectl, helm and other clients: this plane's kubeconfig, private
        kubectl and helm caches."""
        env = dict(os.environ)
        home = self.directory / "client"
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(home / "kube-cache"),
            HELM_CACHE_HOME=str(home / "helm-cache"),
            HELM_CONFIG_HOME=str(home / "helm-config"),
            HELM_DATA_HOME=str(home / "helm-data"),
        )
        return env

    def logs(self, lines: int = 30) -> dict[str, str]:
        return {p.name: p.log_tail(lines) for p in self._processes}

    def check_alive(self) -> None:
        for process in self._processes:
            process.check_alive()

    # -- clients -------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120.0) -> str:
        """Run kubectl against this plane and return stdout; raise with stderr on failure."""
        return self.run(self.kubectl_path, *args, stdin=stdin, timeout=timeout)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 300.0) -> str:
        return self.run(str(self.binaries.helm), *args, timeout=timeout)

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 120.0) -> str:
        proc = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            error = subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
            error.add_note(proc.stderr[-3000:])
            raise error
        return proc.stdout

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        """Call the API server as cluster admin; JSON in, JSON (or text) out."""
        status, text = self._http(method, path, body, content_type)
        try:
            payload: Any = json.loads(text) if text else None
        except ValueError:
            payload = text
        if status >= 400:
            raise ApiError(status, payload)
        return payload

    def get(self, path: str) -> Any:
        """The object at ``path``, or None when it does not exist (404)."""
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _http(self, method: str, path: str, body: Any, content_type: str) -> tuple[int, str]:
        pki = self._require_pki()
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        conn = http.client.HTTPSConnection("127.0.0.1", self._port, context=context, timeout=30)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    # -- resources -----------------------------------------------------------------------------

    def install_crds(self, directory: Path) -> list[str]:
        """Apply every manifest in ``directory`` (server-side) and wait until each CRD is
        Established; return the CRD names."""
        out = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-o", "name", "-f", str(directory)
        )
        names = [
            line.split("/", 1)[1]
            for line in out.split()
            if line.startswith("customresourcedefinition")
        ]
        if not names:
            raise StartupError(f"no CustomResourceDefinitions found in {directory}")
        for name in names:
            wait_until(
                partial(self.crd_established, name),
                timeout=self.timeout,
                what=f"CRD {name} to be Established",
                alive=self.check_alive,
            )
        self.installed_crds.extend(names)
        return names

    def crd_established(self, name: str) -> bool:
        crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        return c.condition_true(crd, "Established")

    def add_kwok_nodes(self, count: int, prefix: str = "kwok-node") -> list[str]:
        """Register ``count`` fake nodes managed by kwok and wait until they are Ready."""
        start = len(self.node_names)
        names = [f"{prefix}-{i}" for i in range(start, start + count)]
        for name in names:
            self.request("POST", "/api/v1/nodes", c.kwok_node(name))
        for name in names:
            wait_until(
                partial(self.node_ready, name),
                timeout=self.timeout,
                what=f"node {name} to be Ready",
                alive=self.check_alive,
            )
        self.node_names.extend(names)
        return names

    def node_ready(self, name: str) -> bool:
        return c.condition_true(self.request("GET", f"/api/v1/nodes/{name}"), "Ready")

    # -- startup -------------------------------------------------------------------------------

    def _require_pki(self) -> Pki:
        if self._pki is None:
            raise RuntimeError("control plane is not running")
        return self._pki

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.directory)
        self._processes.append(process)
        process.start()
        return process

    def _start_all(self) -> None:
        missing = self.binaries.missing()
        if missing:
            raise FileNotFoundError(f"control-plane binaries missing: {missing}")
        pki = self._pki = make_pki(self.directory / "pki")
        self._start_etcd_and_apiserver(pki)
        self.kubeconfig.write_text(json.dumps(c.kubeconfig(self.server, pki), indent=2))
        if self.controllers:
            self._start_controllers(pki)
        if self.crds_dir is not None:
            self.install_crds(self.crds_dir)
        if self.kwok_nodes > 0:
            self._spawn("kwok", c.kwok_argv(self.binaries, self.kubeconfig, free_port()))
            self.add_kwok_nodes(self.kwok_nodes)
        if self.controllers:  # pods need the default service account the controllers create
            wait_until(
                partial(self.request, "GET", "/api/v1/namespaces/default/serviceaccounts/default"),
                timeout=self.timeout,
                what="the default service account",
                alive=self.check_alive,
            )

    def _start_etcd_and_apiserver(self, pki: Pki) -> None:
        client, peer = free_port(), free_port()
        etcd = self._spawn(
            "etcd", c.etcd_argv(self.binaries, self.directory / "etcd", client, peer)
        )
        self._wait(partial(c.http_ok, f"http://127.0.0.1:{client}/health"), "etcd /health", etcd)
        self._port = free_port()
        argv = c.apiserver_argv(
            self.binaries,
            pki,
            self.directory / "apiserver",
            etcd_port=client,
            port=self._port,
            service_account_admission=self.controllers,
        )
        apiserver = self._spawn("kube-apiserver", argv)

        def ready() -> bool:
            return self._http("GET", "/readyz", None, "") == (200, "ok")

        self._wait(ready, "kube-apiserver /readyz", apiserver)

    def _start_controllers(self, pki: Pki) -> None:
        kcm_port, scheduler_port = free_port(), free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            c.controller_manager_argv(
                self.binaries, pki, self.kubeconfig, self.directory / "kcm", kcm_port
            ),
        )
        scheduler = self._spawn(
            "kube-scheduler", c.scheduler_argv(self.binaries, self.kubeconfig, scheduler_port)
        )
        for process, port in ((kcm, kcm_port), (scheduler, scheduler_port)):
            probe = partial(c.http_ok, f"https://127.0.0.1:{port}/healthz", verify=False)
            self._wait(probe, f"{process.name} /healthz", process)

    def _wait(self, probe: Callable[[], object], what: str, process: ManagedProcess) -> None:
        wait_until(probe, timeout=self.timeout, what=what, alive=process.check_alive)
