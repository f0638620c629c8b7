"""A single-node Kubernetes cluster in a container, started by the project's own launcher.

The node runs on the project's Docker engine with kind's flags minus ``--privileged`` (which
Docker 20.10 cannot honour on this machine): every capability but ``CAP_SYS_RESOURCE``, seccomp,
AppArmor and the system paths unconfined, a private cgroup namespace, any device allowed, ``/var``
on a volume, ``/tmp`` and ``/run`` on tmpfs. systemd is PID 1 and runs containerd and the
kubelet; ``kubeadm init`` makes the control plane; the add-ons follow (docs/cluster.md).

The API server is published on 127.0.0.1 only; ``Cluster.kubeconfig`` points there.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from streampulse.local.ports import free_port as _free_port
from tests.harness.cluster import manifests
from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    cache_root,
    locked,
    run_capture,
    run_step,
)
from tests.harness.cluster.components import components_home
from tests.harness.cluster.engine import Engine, ensure_engine, find_engine
from tests.harness.cluster.nodeimage import HELPER_IMAGE, NodeImage, ensure_node_image
from tests.harness.cluster.versions import KUBERNETES

T = TypeVar("T")

CLUSTER_LABEL = "streampulse.cluster"
NODE_FLAGS = (
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--cgroupns=private",
    "--device-cgroup-rule=a *:* rwm",
    "--device=/dev/kmsg",
    "--tmpfs=/tmp",
    "--tmpfs=/run",
    "--volume=/var",
    "--init=false",
    "--restart=no",
    "--tty",
)


class WaitAborted(ClusterError):
    """Raised by a probe when waiting longer cannot help (a unit failed, a pod crashed)."""


def wait_for(
    probe: Callable[[], T | None], *, timeout_s: float, what: str, every: float = 1.0
) -> T:
    """Poll until ``probe`` returns something truthy; raise ClusterError at the deadline.

    A probe raising ClusterError, OSError or ValueError is asked again, except for
    :class:`WaitAborted`, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            result = probe()
        except WaitAborted:
            raise
        except (ClusterError, OSError, ValueError) as exc:
            last, result = exc, None
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last})" if last else ""
            raise ClusterError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(every)


@dataclass
class Cluster:
    """A running single-node cluster: its kubeconfig, kubectl, image loading, teardown."""

    name: str
    engine: Engine
    home: Path
    container: str
    api_port: int
    kubectl_bin: Path
    network: manifests.Network = field(default_factory=manifests.Network)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def host_address(self) -> str:
        """The address pods reach the host at (the node network's gateway)."""
        return self.network.gateway

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        cache_dir: Path | None = None,
        *,
        name: str = manifests.CLUSTER_NAME,
        say: Progress | None = None,
        reuse: bool = True,
    ) -> Cluster:
        """Start the cluster (building whatever is missing), or return it if already up."""
        say = say or Progress()
        started = time.monotonic()
        engine = ensure_engine(cache_dir, say)
        home = cache_root(cache_dir) / f"cluster-{name}"
        home.mkdir(parents=True, exist_ok=True)
        with locked(home.parent / f"cluster-{name}.lock"):
            if reuse and (running := cls.existing(cache_dir, name=name, engine=engine)):
                say(f"cluster {name} is already up ({running.kubeconfig})")
                return running
            t0 = time.monotonic()
            image = ensure_node_image(engine, cache_dir, say)
            images_s = time.monotonic() - t0
            cluster = cls._create(engine, image, home, name, cache_dir, say)
            cluster.timings["images_s"] = round(images_s, 1)
            cluster.timings["total_s"] = round(time.monotonic() - started, 1)
            cluster._save_state()
        say(
            f"cluster {name} ready in {cluster.timings['total_s']:.0f}s "
            f"(node {cluster.timings.get('ready_s', 0):.0f}s after the images)"
        )
        say(f"export KUBECONFIG={cluster.kubeconfig}")
        say(f"kubectl {KUBERNETES}: {cluster.kubectl_bin}")
        return cluster

    @classmethod
    def existing(
        cls,
        cache_dir: Path | None = None,
        *,
        name: str = manifests.CLUSTER_NAME,
        engine: Engine | None = None,
    ) -> Cluster | None:
        """The cluster ``up`` started, if its node runs and its API server answers."""
        home = cache_root(cache_dir) / f"cluster-{name}"
        state_file = home / "state.json"
        if not state_file.is_file():
            return None
        engine = engine or find_engine(cache_dir)
        if engine is None:
            return None
        state = json.loads(state_file.read_text())
        cluster = cls(
            name=name,
            engine=engine,
            home=home,
            container=state["container"],
            api_port=int(state["api_port"]),
            kubectl_bin=Path(state["kubectl"]),
            timings=state.get("timings", {}),
        )
        running = engine.docker(
            "inspect", "-f", "{{.State.Running}}", cluster.container, check=False
        )
        if running.stdout.strip() != "true":
            return None
        if cluster.kubectl("get", "--raw", "/readyz", check=False, timeout_s=20).returncode != 0:
            return None
        return cluster

    @classmethod
    def _create(
        cls,
        engine: Engine,
        image: NodeImage,
        home: Path,
        name: str,
        cache_dir: Path | None,
        say: Progress,
    ) -> Cluster:
        net = manifests.Network()
        container = manifests.NODE_NAME if name == manifests.CLUSTER_NAME else f"{name}-node"
        _remove_node(engine, container, name, say)
        (home / "state.json").unlink(missing_ok=True)
        kubectl = components_home(cache_dir) / f"kubernetes-{KUBERNETES}" / "bin" / "kubectl"
        port = _free_port()
        cluster = cls(
            name=name,
            engine=engine,
            home=home,
            container=container,
            api_port=port,
            kubectl_bin=kubectl,
            network=net,
        )
        t0 = time.monotonic()
        with say.step(f"docker network {name} ({net.node_subnet})"):
            engine.docker(
                "network",
                "create",
                "--driver=bridge",
                f"--subnet={net.node_subnet}",
                f"--gateway={net.gateway}",
                "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
                f"--label={CLUSTER_LABEL}={name}",
                name,
            )
        with say.step(f"start node {container} ({image.tag}), API on 127.0.0.1:{port}"):
            engine.docker(
                "run",
                "--detach",
                f"--name={container}",
                f"--hostname={container}",
                f"--label={CLUSTER_LABEL}={name}",
                f"--network={name}",
                f"--ip={net.node_ip}",
                f"--publish=127.0.0.1:{port}:6443",
                f"--volume={image.images_tar}:/streampulse/images.tar:ro",
                *NODE_FLAGS,
                image.tag,
            )
        try:
            cluster._boot(say)
        except ClusterError:
            say(f"node logs: docker logs {container}; state kept for inspection in {home}")
            raise
        cluster.timings["ready_s"] = round(time.monotonic() - t0, 1)
        return cluster

    def _boot(self, say: Progress) -> None:
        with say.step("systemd, containerd and the component images in the node"):
            wait_for(
                lambda: self.exec_node("ctr", "version", check=False).returncode == 0,
                timeout_s=120,
                what="containerd in the node",
            )
            wait_for(
                self._images_imported,
                timeout_s=600,
                what="the component images to be imported",
                every=2,
            )
        self.exec_node(
            "sh",
            "-c",
            "cat > /streampulse/kubeadm.yaml",
            input_text=manifests.kubeadm_config(self.network),
        )
        with say.step(f"kubeadm init (Kubernetes {KUBERNETES})"):
            run_step(
                [
                    *self._docker_exec(),
                    "kubeadm",
                    "init",
                    "--config=/streampulse/kubeadm.yaml",
                    "--skip-token-print",
                    "--v=1",
                ],
                log=self.home / "kubeadm-init.log",
                say=say,
                label="kubeadm init",
                env=self.engine.env(),
                timeout_s=900,
            )
        admin = self.exec_node("cat", "/etc/kubernetes/admin.conf").stdout
        server = f"https://{self.network.node_ip}:6443"
        if server not in admin:
            raise ClusterError(f"admin.conf does not name {server}")
        self.kubeconfig.write_text(admin.replace(server, self.server))
        self.kubeconfig.chmod(0o600)
        with say.step("kube-proxy's rules for the kubernetes Service"):
            # pods started earlier would send their first API request nowhere and wait 30s
            wait_for(
                lambda: (
                    f"{self.network.api_service_ip}/32"
                    in self.exec_node(
                        "iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False
                    ).stdout
                ),
                timeout_s=180,
                what="kube-proxy to program the kubernetes Service",
            )
        with say.step("add-ons: CoreDNS without upstream, kube-router, metrics-server, local-path"):
            # kubeadm keeps a Corefile that differs from its default: put ours in place first
            self.kubectl("apply", "-f", "-", input_text=manifests.coredns_configmap())
            self.exec_node(
                "kubeadm", "init", "phase", "addon", "coredns", "--config=/streampulse/kubeadm.yaml"
            )
            self.kubectl("apply", "-f", "-", input_text=manifests.kube_router(self.network))
            self.kubectl("apply", "-f", "-", input_text=manifests.metrics_server())
            helper = manifests.local_path_storage(HELPER_IMAGE)
            self.kubectl("apply", "-f", "-", input_text=helper)
        with say.step("node Ready and the add-ons available"):
            self._wait_ready(say)

    def _images_imported(self) -> bool:
        proc = self.exec_node(
            "systemctl", "show", "-p", "ActiveState,Result", "streampulse-images.service"
        )
        if "Result=success" in proc.stdout and "ActiveState=active" in proc.stdout:
            return True
        if "ActiveState=failed" in proc.stdout:
            log = self.exec_node(
                "journalctl", "-u", "streampulse-images.service", "--no-pager", check=False
            )
            raise WaitAborted(f"importing images failed:\n{log.stdout[-3000:]}")
        return False

    def _wait_ready(self, say: Progress) -> None:
        wait_for(
            lambda: (
                self.kubectl(
                    "wait",
                    "--for=condition=Ready",
                    f"node/{manifests.NODE_NAME}",
                    "--timeout=10s",
                    check=False,
                ).returncode
                == 0
            ),
            timeout_s=300,
            what="the node to be Ready",
        )
        say("  node Ready")
        rollouts = [
            ("kube-system", "deployment/coredns"),
            ("kube-system", "daemonset/kube-router"),
            ("kube-system", "deployment/metrics-server"),
            ("local-path-storage", "deployment/local-path-provisioner"),
        ]
        for namespace, what in rollouts:
            wait_for(
                partial(self.succeeds, "-n", namespace, "rollout", "status", what, "--timeout=10s"),
                timeout_s=300,
                what=f"{what} in {namespace}",
            )
            say(f"  {namespace}/{what} available")
        wait_for(
            lambda: (
                self.kubectl(
                    "wait",
                    "--for=condition=Available",
                    "apiservice/v1beta1.metrics.k8s.io",
                    "--timeout=10s",
                    check=False,
                ).returncode
                == 0
            ),
            timeout_s=300,
            what="the metrics.k8s.io API",
        )
        say("  metrics.k8s.io available")

    def down(self, say: Progress | None = None) -> None:
        """Remove the node, its volume and its network; nothing of the cluster keeps running."""
        say = say or Progress()
        _remove_node(self.engine, self.container, self.name, say)
        shutil.rmtree(self.home, ignore_errors=True)

    def _save_state(self) -> None:
        state = {
            "container": self.container,
            "api_port": self.api_port,
            "kubectl": str(self.kubectl_bin),
            "kubernetes": KUBERNETES,
            "engine": self.engine.host,
            "timings": self.timings,
        }
        (self.home / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    # --- using it ----------------------------------------------------------------------------

    def succeeds(self, *args: str) -> bool:
        """Whether ``kubectl <args>`` exits 0."""
        return self.kubectl(*args, check=False).returncode == 0

    def kubectl(
        self,
        *args: str,
        input_text: str | None = None,
        check: bool = True,
        timeout_s: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl --kubeconfig <this cluster> <args>`` (kubectl v1.37 built for the node)."""
        return run_capture(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            input_text=input_text,
            check=check,
            timeout_s=timeout_s,
        )

    def _docker_exec(self, interactive: bool = False) -> list[str]:
        return [self.engine.cli, "exec", *(["-i"] if interactive else []), self.container]

    def exec_node(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the node container."""
        return run_capture(
            [*self._docker_exec(interactive=input_text is not None), *args],
            env=self.engine.env(),
            input_text=input_text,
            check=check,
            timeout_s=timeout_s,
        )

    def load_image(self, tag: str, timeout_s: float = 600.0) -> None:
        """Copy a local image into the node's containerd (``docker save | ctr images import``).

        Pods use it by the same name with ``imagePullPolicy: IfNotPresent`` (or ``Never``);
        nothing is ever pulled from a registry here.
        """
        env = self.engine.env()
        save = subprocess.Popen(
            [self.engine.cli, "save", tag], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            load = subprocess.run(
                [
                    *self._docker_exec(interactive=True),
                    "ctr",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "-",
                ],
                env=env,
                stdin=save.stdout,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        finally:
            if save.stdout is not None:
                save.stdout.close()
            save_err = save.communicate(timeout=timeout_s)[1]
        if save.returncode != 0:
            raise ClusterError(f"docker save {tag} failed: {save_err.decode(errors='replace')}")
        if load.returncode != 0:
            raise ClusterError(f"importing {tag} into the node failed: {load.stderr}")

    @contextlib.contextmanager
    def _client_files(self) -> Iterator[tuple[str, str, str]]:
        """The admin kubeconfig's CA, client certificate and key as files (for ssl)."""
        text = self.kubeconfig.read_text()
        with tempfile.TemporaryDirectory(prefix="streampulse-kube-") as tmp:
            paths = []
            for name, key in (
                ("ca.crt", "certificate-authority-data"),
                ("client.crt", "client-certificate-data"),
                ("client.key", "client-key-data"),
            ):
                found = re.search(rf"^\s*{key}:\s*(\S+)\s*$", text, re.MULTILINE)
                if found is None:
                    raise ClusterError(f"{self.kubeconfig} has no {key}")
                path = Path(tmp) / name
                path.write_bytes(base64.b64decode(found.group(1)))
                paths.append(str(path))
            yield paths[0], paths[1], paths[2]

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to the API server as the cluster admin: (HTTP status, decoded body)."""
        with self._client_files() as (ca, cert, key):
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(cert, key)
            conn = http.client.HTTPSConnection("127.0.0.1", self.api_port, context=context)
            try:
                payload = json.dumps(body) if body is not None else None
                conn.request(
                    method, path, body=payload, headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                raw = response.read()
            finally:
                conn.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return response.status, decoded


def _remove_node(engine: Engine, container: str, network: str, say: Progress) -> None:
    existing = engine.docker("inspect", "-f", "{{.Id}}", container, check=False)
    if existing.returncode == 0:
        with say.step(f"remove node {container}"):
            engine.docker("rm", "--force", "--volumes", container, timeout_s=180)
    net = engine.docker("network", "inspect", network, check=False)
    if net.returncode == 0:
        engine.docker("network", "rm", network)
        say(f"removed docker network {network}")


def down(
    cache_dir: Path | None = None, name: str = manifests.CLUSTER_NAME, say: Progress | None = None
) -> bool:
    """Remove the cluster ``up`` started (node, volume, network, state); True if there was one."""
    say = say or Progress()
    engine = find_engine(cache_dir)
    home = cache_root(cache_dir) / f"cluster-{name}"
    if engine is None:
        shutil.rmtree(home, ignore_errors=True)
        say("no docker engine answers: nothing runs")
        return False
    container = manifests.NODE_NAME if name == manifests.CLUSTER_NAME else f"{name}-node"
    found = engine.docker("inspect", "-f", "{{.Id}}", container, check=False).returncode == 0
    _remove_node(engine, container, name, say)
    shutil.rmtree(home, ignore_errors=True)
    return found
