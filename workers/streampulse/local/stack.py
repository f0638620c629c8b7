"""``streampulse up``: the whole pipeline on one machine, as real local processes.

In order: a Kafka broker; the Jetstream source (live when it answers, else the replay server,
said plainly on screen); the model server (offline default models, or exported model
directories when configured); ingest; enrich; the Flink job on its local mini-cluster writing
the Paimon warehouse; the dashboard. A live status block shows each stage's rates, lag and
health until Ctrl-C (or ``streampulse down``), which stops everything, in reverse order.
``<state_dir>/up.json`` records what runs, for ``streampulse status`` and ``down``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from streampulse.errors import LauncherError
from streampulse.kafka import ensure_topics
from streampulse.local.flink_job import ensure_flink_environment, flink_project_dir, job_argv
from streampulse.local.iceberg_rest import warehouse_uri
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.local.ports import free_port
from streampulse.local.processes import Child
from streampulse.local.runs import RunRecord, Stage, alive, remove_record
from streampulse.local.status import StatusBoard
from streampulse.settings import Settings

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 4.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


async def _first_reachable(endpoints: tuple[str, ...]) -> str | None:
    for endpoint in endpoints:
        try:
            async with connect(endpoint, open_timeout=_PROBE_TIMEOUT_S, compression=None):
                return endpoint
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("Jetstream %s unreachable: %s", endpoint, exc)
        except Exception as exc:
            log.debug("Jetstream %s refused: %s", endpoint, exc)
    return None


def probe_jetstream(endpoints: tuple[str, ...]) -> str | None:
    """The first live Jetstream endpoint that accepts a websocket, or None."""
    return asyncio.run(_first_reachable(endpoints))


def wait_http_ok(url: str, child: Child, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail if the child exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise LauncherError(f"{child.name} exited early; see {child.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise LauncherError(f"{child.name} not ready at {url} within {timeout_s:.0f}s")


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest completed checkpoint of any earlier run (``<job>/chk-N/_metadata``)."""
    done = list(checkpoint_dir.glob("*/chk-*/_metadata"))
    return max(done, key=lambda p: p.stat().st_mtime).parent if done else None


class LocalStack:
    """The processes of one ``up``, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        self.settings = settings
        self.state = settings.local.state_dir
        self.logs = self.state / "logs"
        self.stack = stack
        self.record = RunRecord(pid=os.getpid(), started_at=time.time())
        self.children: list[Child] = []
        self.board = StatusBoard()
        self.flink: Child | None = None
        self.env: dict[str, str] = {
            "STREAMPULSE_PAIMON__WAREHOUSE": str(self.warehouse),
        }

    @property
    def warehouse(self) -> str:
        return self.settings.paimon.warehouse or str(self.state / "warehouse")

    def say(self, stage: str, text: str) -> None:
        print(f"{stage:<10} {text}", flush=True)

    def child(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        *,
        program: list[str] | None = None,
        metrics_url: str | None = None,
    ) -> Child:
        """Start a stage. Its metrics are at ``metrics_url`` when it serves them on a port of
        its own (the model server, on its API port); otherwise on a free port given to it, or
        nowhere for a program that is not a ``streampulse`` command (the Flink job)."""
        # each stage writes its spans to a file of its own: appends of several processes to
        # one file could interleave
        traces = self.state / "traces" / f"{name}.jsonl"
        env = {**self.env, "STREAMPULSE_TELEMETRY__TRACES_FILE": str(traces), **env}
        if metrics_url is None and program is None:
            metrics_port = free_port()
            env["STREAMPULSE_METRICS_PORT"] = str(metrics_port)
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        child = Child(name, args, env, self.logs / f"{name}.log")
        if program is not None:
            child.program = program
        self.stack.enter_context(_started(child))
        self.children.append(child)
        self.record.add(Stage(name, child.pid, metrics_url=metrics_url or ""), self.state)
        if metrics_url:
            self.board.watch(name, metrics_url)
        return child

    def start_kafka(self) -> None:
        local = self.settings.local
        broker = KafkaBroker(
            libs=ensure_kafka(self.settings.cache_dir, local.kafka_version),
            data_dir=self.state / "kafka",
            port=local.kafka_port,
            heap_mb=local.kafka_heap_mb,
            java_home=local.java_home,
        )
        self.stack.enter_context(broker)
        self.record.add(Stage("kafka", broker.pid, url=broker.bootstrap_servers), self.state)
        kafka = self.settings.kafka.model_copy(
            update={"bootstrap_servers": broker.bootstrap_servers}
        )
        ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic, kafka.dlq_topic])
        self.env["STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        self.say("kafka", f"ready at {broker.bootstrap_servers} (pid {broker.pid})")

    def start_source(self) -> None:
        live = probe_jetstream(self.settings.jetstream.endpoints)
        if live is not None:
            self.say("jetstream", f"LIVE from {live}")
            return
        port = free_port()
        env = {
            "STREAMPULSE_REPLAY__PORT": str(port),
            "STREAMPULSE_REPLAY__LOOP": "true",
            "STREAMPULSE_REPLAY__REBASE_TO_NOW": "true",
        }
        replay = self.child("replay", ["replay"], env)
        replay.wait_for_output("listening on", timeout_s=60)
        endpoint = f"ws://127.0.0.1:{port}/subscribe"
        self.env["STREAMPULSE_JETSTREAM__ENDPOINTS"] = orjson.dumps([endpoint]).decode()
        self.say(
            "jetstream",
            "live Jetstream is NOT reachable: replaying the recorded captures plus a synthetic "
            f"stream at the real rate profile from {endpoint} (pid {replay.pid})",
        )

    def start_models(self) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        models = self.child(
            "models", ["serve-models", "--port", str(port)], {}, metrics_url=f"{url}/metrics"
        )
        wait_http_ok(f"{url}/readyz", models, timeout_s=300)
        self.env["STREAMPULSE_ENRICH__GATEWAY_URL"] = url
        self.record.stages["models"].url = url
        which = "exported models" if self.settings.serving.model_dirs else "offline default models"
        self.say("models", f"{which} ready at {url} (pid {models.pid})")

    def start_workers(self) -> None:
        ingest = self.child("ingest", ["ingest"], {})
        self.say("ingest", f"started (pid {ingest.pid})")
        enrich = self.child("enrich", ["enrich"], {})
        self.say("enrich", f"started (pid {enrich.pid})")

    def start_flink(self) -> None:
        """Launch the job early: planning and compiling its SQL is the slowest start of all,
        and it overlaps with the other stages' (``wait_flink`` collects it)."""
        local = self.settings.local
        env = ensure_flink_environment(flink_project_dir(local.flink_dir), self.settings.cache_dir)
        rest_port = free_port()
        checkpoints = self.state / "flink-checkpoints"
        # Flink's temporary files (blobs, extracted jars): emptied now in case a killed run
        # left some, removed once the job has exited (the callback runs after its stop)
        scratch = self.state / "flink-scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        self.stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        options: dict[str, object] = {
            "bootstrap_servers": self.env["STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS"],
            "raw_topic": self.settings.kafka.raw_topic,
            "enriched_topic": self.settings.kafka.enriched_topic,
            # a URI, so the Iceberg metadata Paimon publishes is readable by Trino
            "warehouse": warehouse_uri(self.warehouse),
            "checkpoint_dir": checkpoints.as_uri(),
            "checkpoint_interval_ms": local.flink_checkpoint_interval_ms,
            "rest_port": rest_port,
            "scratch_dir": str(scratch),
        }
        restore = latest_checkpoint(checkpoints)
        if restore is not None:
            options["restore_from"] = restore.as_uri()
            self.say("flink", f"restoring the job's state from {restore}")
        argv = job_argv(env, options)
        flink_env = {
            "JVM_ARGS": f"-Xmx{local.flink_heap_mb}m",
            "PYTHONUNBUFFERED": "1",
            **env.process_env,
        }
        self.flink = self.child("flink", argv[1:], flink_env, program=argv[:1])
        rest_url = f"http://127.0.0.1:{rest_port}"
        self.record.stages["flink"].url = rest_url
        self.env["STREAMPULSE_DASHBOARD__FLINK_REST_URL"] = rest_url
        self.say("flink", f"planning the job (pid {self.flink.pid}); REST will be at {rest_url}")

    def wait_flink(self) -> None:
        assert self.flink is not None
        self.flink.wait_for_output(
            "job started", timeout_s=self.settings.local.flink_start_timeout_s
        )
        self.board.flink_rest_url = self.record.stages["flink"].url
        self.say("flink", f"job running, writing Paimon tables to {self.warehouse}")

    def start_dashboard(self) -> str:
        targets = {s.name: s.metrics_url for s in self.record.stages.values() if s.metrics_url}
        env = {"STREAMPULSE_DASHBOARD__METRICS_TARGETS": orjson.dumps(targets).decode()}
        dashboard = self.child("dashboard", ["dashboard"], env)
        dashboard.wait_for_output("dashboard at", timeout_s=60)
        host, port = self.settings.dashboard.host, self.settings.dashboard.port
        url = f"http://{host}:{port}/"
        self.record.stages["dashboard"].url = url
        return url

    def supervise(self) -> None:
        """Redraw the status until a stop signal; a stage that dies stops the whole stack."""
        interactive = sys.stdout.isatty()
        every_s = 2.0 if interactive else self.settings.local.status_every_s
        while signal.sigtimedwait(STOP_SIGNALS, every_s) is None:
            for child in self.children:
                if not child.alive():
                    raise LauncherError(f"{child.name} exited; see {child.log_path}")
            self.board.show(interactive)
        print("\nstopping ...", flush=True)


@contextmanager
def _started(child: Child) -> Iterator[Child]:
    child.start()
    try:
        yield child
    finally:
        child.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stack(settings: Settings) -> None:
    """Start every stage, show status until Ctrl-C or a stage dies, then stop them all.

    While stages start, SIGINT and SIGTERM interrupt the start; once all run they are blocked
    and awaited, so stopping never races a half-finished step.
    """
    state = settings.local.state_dir
    running = RunRecord.read(state)
    if running is not None and alive(running.pid):
        raise LauncherError(
            f"a stack is already running from {state} (pid {running.pid}): "
            "`streampulse down` stops it"
        )
    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as stack:
            stack.callback(remove_record, state)
            local = LocalStack(settings, stack)
            try:
                local.start_kafka()
                local.start_flink()
                local.start_source()
                local.start_models()
                local.start_workers()
                url = local.start_dashboard()
                local.wait_flink()
            except KeyboardInterrupt:
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                print("\nstopping before every stage started ...", flush=True)
            else:
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                local.record.ready = True
                local.record.write(state)
                local.say("dashboard", url)
                print(
                    f"all stages running after {time.monotonic() - started:.0f}s; logs in "
                    f"{local.logs}; Ctrl-C or `streampulse down` stops everything",
                    flush=True,
                )
                local.supervise()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        signal.signal(signal.SIGTERM, previous_handler)
    print("stopped: every process started by `up` has exited", flush=True)
