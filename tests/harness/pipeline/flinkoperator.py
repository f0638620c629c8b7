"""The FlinkDeployment as the real Flink Kubernetes Operator runs it (upstream mode).

The operator reconciles it; the test only reads what it reports: the resource's status, which
the Flink operator keeps from the job manager's REST API. ``start`` and ``stop`` are there so
the stage treats it like :class:`~tests.harness.pipeline.flinkdriver.FlinkDriver`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.harness.cluster import Cluster, Progress
from tests.harness.pipeline import kube


@dataclass
class FlinkOperatorWatch:
    cluster: Cluster
    namespace: str
    name: str
    say: Progress

    def start(self) -> FlinkOperatorWatch:
        return self

    def stop(self) -> None:
        """Nothing to stop: the Flink operator keeps reconciling (and, on deletion, removes the
        cluster and its HA ConfigMaps itself)."""

    def wait_running(self, timeout_s: float) -> str:
        """The job's id once the Flink operator reports the deployment STABLE, its job RUNNING
        and the job manager ready."""

        def probe() -> str | None:
            found = kube.get(self.cluster, "flinkdeployment", self.name, "-n", self.namespace)
            status = (found or {}).get("status") or {}
            job = status.get("jobStatus") or {}
            if (
                status.get("lifecycleState") == "STABLE"
                and status.get("jobManagerDeploymentStatus") == "READY"
                and job.get("state") == "RUNNING"
                and job.get("jobId")
            ):
                return str(job["jobId"])
            return None

        started = time.monotonic()
        found = kube.until(probe, timeout_s, f"the Flink job of {self.name} to run", every=3)
        self.say(f"flink job {found} RUNNING after {time.monotonic() - started:.0f}s")
        return found
