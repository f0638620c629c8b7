"""``streampulse up``: the pipeline on one machine, as real local processes.

Starts a Kafka broker, then ingest from live Jetstream when it answers, or else from the replay
server (said plainly on screen), and shows a live progress line until Ctrl-C, which stops
everything that was started, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import orjson
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from streampulse.errors import LauncherError
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka, free_port
from streampulse.local.processes import Child
from streampulse.settings import Settings

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 4.0


async def _first_reachable(endpoints: tuple[str, ...]) -> str | None:
    for endpoint in endpoints:
        try:
            async with connect(endpoint, open_timeout=_PROBE_TIMEOUT_S, compression=None):
                return endpoint
        except (OSError, TimeoutError, ValueError) as exc:
            log.info("Jetstream %s unreachable: %s", endpoint, exc)
        except Exception as exc:
            log.info("Jetstream %s refused: %s", endpoint, exc)
    return None


def probe_jetstream(endpoints: tuple[str, ...]) -> str | None:
    """The first live Jetstream endpoint that accepts a websocket, or None."""
    return asyncio.run(_first_reachable(endpoints))


@dataclass
class Rates:
    """Per-collection counters scraped from a process's /metrics, turned into rates."""

    previous: dict[str, float] = field(default_factory=dict)
    previous_at: float = 0.0

    def update(self, counts: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        elapsed = now - self.previous_at if self.previous_at else 0.0
        rates = {
            key: (value - self.previous.get(key, 0.0)) / elapsed if elapsed else 0.0
            for key, value in counts.items()
        }
        self.previous, self.previous_at = counts, now
        return rates


def scrape(port: int) -> dict[str, dict[str, float]]:
    """``{metric: {label-values: value}}`` from a local /metrics endpoint."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = ",".join(str(v) for v in sample.labels.values())
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def human_duration(seconds: float) -> str:
    """12.3s, 4.5m, 2.0h or 145.1d: lag reads at a glance (replays of old data lag by days)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _short(collection: str) -> str:
    return collection.rsplit(".", 1)[-1]


def progress_line(samples: dict[str, dict[str, float]], rates: Rates) -> str:
    """One line: events/s in total and by collection, dead letters, lag."""
    per_collection = rates.update(samples.get("streampulse_ingest_events_total", {}))
    total = sum(per_collection.values())
    top = sorted(per_collection.items(), key=lambda item: -item[1])[:5]
    by_collection = " ".join(f"{_short(name)} {rate:.0f}" for name, rate in top)
    lag = samples.get("streampulse_ingest_lag_seconds", {}).get("", 0.0)
    dead = sum(
        value
        for key, value in samples.get("streampulse_dead_letters_total", {}).items()
        if key.startswith("ingest")
    )
    return (
        f"ingest {total:7.0f} ev/s | {by_collection} | dead letters {dead:.0f} "
        f"| lag {human_duration(lag)}"
    )


@contextmanager
def _started(child: Child) -> Iterator[Child]:
    child.start()
    try:
        yield child
    finally:
        child.stop()


def run_stack(settings: Settings) -> None:
    """Start everything, show progress until Ctrl-C or a child dies, then stop it all."""
    state = settings.local.state_dir
    logs = state / "logs"
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    with ExitStack() as stack:
        broker = KafkaBroker(
            libs=libs,
            data_dir=state / "kafka",
            port=settings.local.kafka_port,
            heap_mb=settings.local.kafka_heap_mb,
            java_home=settings.local.java_home,
        )
        stack.enter_context(broker)
        print(f"kafka      ready at {broker.bootstrap_servers}", flush=True)
        env = {"STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers}

        live = probe_jetstream(settings.jetstream.endpoints)
        if live is not None:
            print(f"jetstream  LIVE from {live}", flush=True)
        else:
            replay_port = free_port()
            replay_env = {
                **env,
                "STREAMPULSE_REPLAY__PORT": str(replay_port),
                "STREAMPULSE_REPLAY__LOOP": "true",
            }
            replay = Child("replay", ["replay"], replay_env, logs / "replay.log")
            stack.enter_context(_started(replay))
            replay.wait_for_output("listening on", timeout_s=60)
            live_endpoint = f"ws://127.0.0.1:{replay_port}/subscribe"
            env["STREAMPULSE_JETSTREAM__ENDPOINTS"] = orjson.dumps([live_endpoint]).decode()
            print(
                "jetstream  live Jetstream is NOT reachable: replaying the recorded captures "
                f"plus a synthetic stream at the real rate profile from {live_endpoint}",
                flush=True,
            )

        metrics_port = free_port()
        ingest = Child(
            "ingest",
            ["ingest"],
            {**env, "STREAMPULSE_METRICS_PORT": str(metrics_port)},
            logs / "ingest.log",
        )
        stack.enter_context(_started(ingest))
        print(f"ingest     metrics at http://127.0.0.1:{metrics_port}/metrics", flush=True)
        print(f"logs       {logs}   (Ctrl-C stops everything)", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        rates = Rates()
        while True:
            if signal.sigtimedwait(stop_signals, 1.0) is not None:
                print("\nstopping ...", flush=True)
                break
            if not ingest.alive():
                raise LauncherError(f"ingest exited; see {ingest.log_path}")
            try:
                line = progress_line(scrape(metrics_port), rates)
            except OSError:
                line = "ingest     starting ..."
            sys.stdout.write(f"\r{line:<110}")
            sys.stdout.flush()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    print("stopped: every process started by `up` has exited", flush=True)
