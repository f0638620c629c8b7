"""The model server behind the fault-injecting proxy, and the worker watched while it suffers:
its resident memory (``RssSampler``), its breaker and paused gauges (``MetricWatch``), its counters
(``metric``), sampled from its /metrics endpoint and /proc.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streampulse.enrich.breaker import BreakerState
from streampulse.local.ports import free_port
from streampulse.settings import KafkaSettings
from tests.faults.enrich_runs import (
    Tail,
    Workers,
    enrich_env,
    settle,
    wait_until,
    write_raw_stream,
)
from tests.harness.processes import ManagedProcess
from tests.harness.tcp_proxy import TcpProxy

BREAKER = "streampulse_enrich_breaker_state"
REQUESTS = "streampulse_enrich_model_requests_total"
PAUSED = "streampulse_enrich_paused"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


class RssSampler:
    """Samples a process's RSS every ``every_s`` on a thread; ``peak_mb`` since the last mark."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self._pid = pid
        self._every = every_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak_mb = max(self.peak_mb, rss_mb(self._pid))

    def mark(self) -> float:
        """Start a new peak; returns the RSS now."""
        now = rss_mb(self._pid)
        self.peak_mb = now
        return now

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak_mb


def metric(port: int, name: str, labels: str = "") -> float:
    """The sum of a metric's samples on a worker's /metrics whose labels contain ``labels``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith(name)
            and line[len(name) : len(name) + 1] in (" ", "{")
            and labels in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


class MetricWatch:
    """Samples one gauge of a worker every ``every_s`` on a thread: every value it showed."""

    def __init__(self, port: int, name: str, every_s: float = 0.1) -> None:
        self._port, self._name, self._every = port, name, every_s
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.values.append(metric(self._port, self._name))
            except OSError:
                continue  # not serving yet, or gone

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class GatewayRun:
    """One worker scoring through the faulty proxy, watched: outcome, memory, breaker."""

    kafka: KafkaSettings
    data_dir: Path
    proxy: TcpProxy
    workers: Workers
    worker: ManagedProcess
    tail: Tail
    rss: RssSampler
    breaker: MetricWatch
    paused: MetricWatch
    metrics_port: int

    def warm_up(self, events: int = 1000) -> float:
        """Posts through the healthy path first; returns the worker's RSS after them (MiB)."""
        self.add_posts(events, seed=1)
        settle(self.tail, self.worker, deadline_s=240, stall_s=120)
        return self.rss.mark()

    def add_posts(self, events: int, seed: int) -> None:
        self.tail.outcome.posts |= write_raw_stream(self.kafka, self.data_dir, events, seed=seed)

    def failed_requests(self) -> float:
        every = metric(self.metrics_port, REQUESTS)
        return every - metric(self.metrics_port, REQUESTS, 'outcome="ok"')

    def until_probes_failed(self, probes: int, timeout_s: float = 120) -> None:
        """Wait until the breaker opened and then ``probes`` more requests failed."""
        wait_until(lambda: self.breaker.last == BreakerState.OPEN, "the breaker open", timeout_s)
        failed = self.failed_requests()
        wait_until(
            lambda: self.failed_requests() >= failed + probes,
            f"{probes} failed probes while the breaker is open",
            timeout_s,
        )

    def close(self) -> None:
        self.rss.stop()
        self.breaker.stop()
        self.paused.stop()
        self.workers.stop_all()
        self.tail.close()
        self.proxy.close()


def start_gateway_run(
    model_port: int, kafka: KafkaSettings, data_dir: Path, logs: Path, **enrich: object
) -> GatewayRun:
    """A proxy in front of the model server and a worker scoring through it, watched."""
    proxy = TcpProxy(model_port)
    port = free_port()
    settings = {"request_timeout_s": 2, "breaker_open_s": 0.5, "batch_posts": 64, **enrich}
    env = enrich_env(kafka, proxy.url, **settings)
    workers = Workers({**env, "STREAMPULSE_METRICS_PORT": str(port)}, logs)
    write_raw_stream(kafka, data_dir, 0)  # the topics
    tail = Tail(kafka, set())
    worker = workers.start()
    return GatewayRun(
        kafka,
        data_dir,
        proxy,
        workers,
        worker,
        tail,
        RssSampler(worker.process.pid),
        MetricWatch(port, BREAKER),
        MetricWatch(port, PAUSED),
        port,
    )
