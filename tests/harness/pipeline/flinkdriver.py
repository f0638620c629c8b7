"""What the Flink Kubernetes Operator does for the operator's ``FlinkDeployment``, done here.

The Flink operator publishes neither an image nor jars that this machine can reach, so its
reconciliation cannot run. Its deployment path can: it turns a ``FlinkDeployment`` into a Flink
configuration and a pod template and deploys it with Flink's native Kubernetes application mode.
:class:`FlinkDriver` does the same with Flink's own CLI (``flink run -t kubernetes-application``,
Flink 2's ``run-application``, from the job's venv that ``make flink-env`` builds) and the
rendered resource as the operator wrote it:

- image, pull policy, service account, pod template (for both roles), ``flinkConfiguration``,
  job manager and task manager cpu and memory, job jar, entry class, arguments, parallelism;
- ``kubernetes.jobmanager.owner.reference`` to the ``FlinkDeployment`` and the Flink operator's
  finalizer, so deleting it removes the cluster and its HA ConfigMaps;
- ``job.state: suspended`` with ``upgradeMode: last-state``: the job manager's Deployment is
  deleted and the HA ConfigMaps kept; ``running`` again deploys it anew and the job manager
  resumes the job from its newest checkpoint (Kubernetes HA, state in the bucket);
- status: ``lifecycleState``, ``jobStatus`` (from the job manager's REST API through the API
  server's service proxy) and ``observedGeneration``, which the StreamPulse operator reads.

The client's base configuration is the Flink distribution's ``config.yaml`` (its Java 17 module
options) without the loopback addresses meant for a single machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.cluster import Cluster, ClusterError, Progress
from tests.harness.cluster.common import log_tail, run_step
from tests.harness.pipeline import kube

FINALIZER = "flinkdeployments.flink.apache.org/finalizer"
HA_SELECTOR = "app={name},type=flink-native-kubernetes"
"""What Flink 2 labels its HA ConfigMaps (and its own config map) with; deleted with the cluster."""
LOCAL_ONLY = ("jobmanager.bind-host", "jobmanager.rpc.address", "taskmanager.bind-host",
              "taskmanager.host", "rest.address", "rest.bind-address")  # fmt: skip


def pyflink_home(python: Path) -> Path:
    """The Flink distribution inside the job venv's ``apache-flink`` wheel."""
    found = sorted((python.parent.parent / "lib").glob("python3*/site-packages/pyflink/bin/flink"))
    if not found:
        raise ClusterError(f"no pyflink/bin/flink in the venv of {python}")
    return found[0].parent.parent


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def configuration(resource: dict[str, Any], base: dict[str, Any], template: Path) -> dict[str, str]:
    """The Flink configuration the Flink operator derives from a ``FlinkDeployment``."""
    meta, spec = resource["metadata"], resource["spec"]
    job, jm, tm = spec["job"], spec["jobManager"], spec["taskManager"]
    owner = ",".join([
        "apiVersion:flink.apache.org/v1beta1", "kind:FlinkDeployment",
        f"name:{meta['name']}", f"uid:{meta['uid']}", "controller:false",
        "blockOwnerDeletion:true",
    ])  # fmt: skip
    config = {k: str(v) for k, v in _flat(base).items() if k not in LOCAL_ONLY}
    config.update({str(k): str(v) for k, v in spec.get("flinkConfiguration", {}).items()})
    config.update({
        "execution.target": "kubernetes-application",
        "kubernetes.cluster-id": meta["name"],
        "kubernetes.namespace": meta["namespace"],
        "kubernetes.container.image.ref": spec["image"],
        "kubernetes.container.image.pull-policy": spec.get("imagePullPolicy", "IfNotPresent"),
        "kubernetes.service-account": spec["serviceAccount"],
        "kubernetes.pod-template-file.jobmanager": str(template),
        "kubernetes.pod-template-file.taskmanager": str(template),
        "kubernetes.rest-service.exposed.type": "ClusterIP",
        "kubernetes.jobmanager.owner.reference": owner,
        "kubernetes.jobmanager.replicas": str(jm.get("replicas", 1)),
        "kubernetes.jobmanager.cpu.amount": str(jm["resource"]["cpu"]),
        "jobmanager.memory.process.size": str(jm["resource"]["memory"]),
        "kubernetes.taskmanager.cpu.amount": str(tm["resource"]["cpu"]),
        "taskmanager.memory.process.size": str(tm["resource"]["memory"]),
        "parallelism.default": str(job.get("parallelism", 1)),
        "execution.shutdown-on-application-finish": "false",
    })  # fmt: skip
    return config


@dataclass
class FlinkDriver:
    """Reconciles one ``FlinkDeployment`` as the Flink operator would, in a background thread."""

    cluster: Cluster
    namespace: str
    name: str
    python: Path
    """The Flink venv's python (``tests.harness.flink.flink_environment``)."""
    logs: Path
    say: Progress
    every_s: float = 2.0
    deployments: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the loop -----------------------------------------------------------------------------

    def start(self) -> FlinkDriver:
        self._thread = threading.Thread(target=self._loop, name="flink-driver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.reconcile()
            except (ClusterError, OSError, ValueError, subprocess.SubprocessError) as exc:
                message = f"flink driver: {exc}"
                if not self.errors or self.errors[-1] != message:
                    self.say(message[:400])
                self.errors.append(message)
            self._stop.wait(self.every_s)

    # --- one round ----------------------------------------------------------------------------

    def reconcile(self) -> None:
        resource = kube.get(self.cluster, "flinkdeployment", self.name, "-n", self.namespace)
        if resource is None:
            return
        meta = resource["metadata"]
        if "deletionTimestamp" in meta:
            self._delete_cluster(keep_ha=False)
            if FINALIZER in meta.get("finalizers", []):
                kept = [f for f in meta["finalizers"] if f != FINALIZER]
                self._patch({"metadata": {"finalizers": kept}})
                self.say(f"flink driver: {self.name} cleaned up, finalizer removed")
            return
        if FINALIZER not in meta.get("finalizers", []):
            self._patch({"metadata": {"finalizers": [*meta.get("finalizers", []), FINALIZER]}})
        wanted = resource["spec"]["job"].get("state", "running")
        jm = kube.get(self.cluster, "deployment", self.name, "-n", self.namespace)
        if wanted == "running" and jm is None:
            self._deploy(resource)
            jm = kube.get(self.cluster, "deployment", self.name, "-n", self.namespace)
        elif wanted == "suspended" and jm is not None:
            self.say(f"flink driver: suspending {self.name} (last-state: HA data kept)")
            self._delete_cluster(keep_ha=True)
            jm = None
        self._status(resource, wanted, jm)

    def _patch(self, body: dict[str, Any], *, status: bool = False) -> None:
        args = ["patch", "flinkdeployment", self.name, "-n", self.namespace, "--type=merge",
                "-p", json.dumps(body)]  # fmt: skip
        self.cluster.kubectl(*args, *(["--subresource=status"] if status else []))

    def _job(self) -> dict[str, Any] | None:
        path = (f"/api/v1/namespaces/{self.namespace}/services/{self.name}-rest:rest"
                "/proxy/jobs/overview")  # fmt: skip
        proc = self.cluster.kubectl("get", "--raw", path, check=False, timeout_s=20)
        if proc.returncode != 0:
            return None
        jobs = json.loads(proc.stdout).get("jobs") or []
        return dict(jobs[0]) if jobs else None

    def _status(self, resource: dict[str, Any], wanted: str, jm: dict[str, Any] | None) -> None:
        generation = resource["metadata"].get("generation", 1)
        if wanted == "suspended":
            status: dict[str, Any] = {
                "lifecycleState": "SUSPENDED",
                "jobManagerDeploymentStatus": "MISSING",
                "jobStatus": {"state": "SUSPENDED"},
            }
        else:
            job = self._job() if jm is not None else None
            state = str(job["state"]) if job else "RECONCILING"
            available = bool(jm and (jm.get("status") or {}).get("availableReplicas"))
            status = {
                "lifecycleState": "STABLE" if state == "RUNNING" else "DEPLOYED",
                "jobManagerDeploymentStatus": "READY" if available else "DEPLOYING",
                "jobStatus": {
                    "state": state,
                    "jobId": job["jid"] if job else None,
                    "jobName": job["name"] if job else None,
                },
            }
        status["observedGeneration"] = generation
        current = resource.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            self._patch({"status": status}, status=True)

    # --- Flink's native Kubernetes mode -------------------------------------------------------

    def _deploy(self, resource: dict[str, Any]) -> None:
        home = pyflink_home(self.python)
        base = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
        job = resource["spec"]["job"]
        conf_dir = Path(tempfile.mkdtemp(prefix="streampulse-flink-conf-"))
        try:
            for name in ("log4j-cli.properties", "log4j-console.properties", "logback.xml",
                         "logback-console.xml"):  # fmt: skip
                shutil.copy2(home / "conf" / name, conf_dir / name)
            template = conf_dir / "pod-template.yaml"
            template.write_text(yaml.safe_dump(resource["spec"]["podTemplate"]))
            config = configuration(resource, base, template)
            config["kubernetes.config.file"] = str(self.cluster.kubeconfig)
            (conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
            argv = [str(home / "bin" / "flink"), "run",
                    "-t", "kubernetes-application", "-c", job["entryClass"], job["jarURI"],
                    *job.get("args", [])]  # fmt: skip
            env = {**os.environ, "FLINK_HOME": str(home), "FLINK_CONF_DIR": str(conf_dir),
                   "FLINK_LOG_DIR": str(self.logs)}  # fmt: skip
            self.logs.mkdir(parents=True, exist_ok=True)
            log = self.logs / "flink-run.log"
            with self.say.step(f"flink run -t kubernetes-application ({self.name})"):
                run_step(argv, log=log, say=self.say, label="flink run",
                         env=env, timeout_s=300)  # fmt: skip
            self.deployments += 1
            if "successfully" not in log_tail(log, 20):
                raise ClusterError(f"flink run did not deploy; see {log}")
        finally:
            shutil.rmtree(conf_dir, ignore_errors=True)

    def _delete_cluster(self, *, keep_ha: bool) -> None:
        """Delete the job manager's Deployment (its pods, services and config go with it by
        owner reference) and wait until no pod of the cluster is left; the HA ConfigMaps too
        unless ``keep_ha`` (a last-state suspension)."""
        self.cluster.kubectl("delete", "deployment", self.name, "-n", self.namespace,
                             "--ignore-not-found", "--wait=true", timeout_s=180)  # fmt: skip
        kube.until(
            lambda: not kube.pods(self.cluster, self.namespace, f"app={self.name}"),
            180,
            f"the pods of Flink cluster {self.name} to go",
            every=2,
        )
        if not keep_ha:
            selector = HA_SELECTOR.format(name=self.name)
            self.cluster.kubectl(
                "delete", "configmap", "-n", self.namespace, "-l", selector, "--ignore-not-found"
            )

    def wait_running(self, timeout_s: float) -> str:
        """The job's id once its job manager reports it and every one of its tasks RUNNING."""

        def probe() -> str | None:
            job = self._job()
            if not job or job.get("state") != "RUNNING":
                return None
            tasks = job.get("tasks") or {}
            return str(job["jid"]) if tasks.get("running") == tasks.get("total") else None

        started = time.monotonic()
        found = kube.until(probe, timeout_s, f"the Flink job of {self.name} to run", every=3)
        self.say(f"flink job {found} RUNNING after {time.monotonic() - started:.0f}s")
        return found
