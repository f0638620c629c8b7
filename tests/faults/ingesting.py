"""Helpers of the ingest fault tests: the replay server and the ingest worker as processes, the
worker under an address-space limit with its peak memory sampled, deadlines instead of sleeps,
and the counts that make a scenario's row (what landed in the raw topic and the dead letters)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streampulse.events import decode_dead_letter
from streampulse.local.kafka_broker import KafkaBroker
from streampulse.replay.streams import build_stream
from streampulse.settings import KafkaSettings, ReplaySettings
from tests.faults.matrix import Process
from tests.harness.processes import ManagedProcess
from tests.harness.topics import read_topic, topic_end_offsets

LANDED_DEADLINE_S = 300.0  # every good event in the raw topic, on a loaded two-core machine
EXIT_DEADLINE_S = 60.0  # SIGTERM to exit

# The worker's address space under ``prlimit --as``: its own footprint (Python, librdkafka's
# threads; about 210 MB of mappings with two malloc arenas) plus the worst a hostile server can
# make it buffer (64 frames of the 4 MiB limit), with room to spare; a sixth of the 4 GiB a zstd
# bomb declares. Peak RSS is what it really uses; both go into the row.
ADDRESS_SPACE_BYTES = 768 << 20
MALLOC_ARENAS = "2"  # else glibc reserves 64 MiB of address space per thread's arena


def replay_env(data_dir: Path, **overrides: object) -> dict[str, str]:
    values: dict[str, object] = {"port": 0, "data_dir": data_dir, "stream": "mixed"}
    values.update(overrides)
    return {
        f"STREAMPULSE_REPLAY__{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in values.items()
    }


def ingest_env(
    kafka: KafkaSettings, url: str, dictionary: Path, *, metrics_port: int, **ingest: object
) -> dict[str, str]:
    env = {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_KAFKA__PARTITIONS": str(kafka.partitions),
        "STREAMPULSE_KAFKA__DELIVERY_TIMEOUT_MS": str(kafka.delivery_timeout_ms),
        "STREAMPULSE_JETSTREAM__ENDPOINTS": orjson.dumps([url]).decode(),
        "STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY": str(dictionary),
        "STREAMPULSE_JETSTREAM__COMPRESS": "true",
        "STREAMPULSE_INGEST__CURSOR_MARGIN_S": "1.0",
        "STREAMPULSE_INGEST__RECONNECT_INITIAL_S": "0.05",
        "STREAMPULSE_INGEST__RECONNECT_MAX_S": "2.0",
        "STREAMPULSE_METRICS_PORT": str(metrics_port),
        "MALLOC_ARENA_MAX": MALLOC_ARENAS,
    }
    env.update({f"STREAMPULSE_INGEST__{k.upper()}": str(v) for k, v in ingest.items()})
    return env


def start_replay(data_dir: Path, log: Path, **overrides: object) -> tuple[ManagedProcess, str]:
    replay = ManagedProcess.streampulse(["replay"], replay_env(data_dir, **overrides), log)
    match = replay.wait_for_output(r"listening on (ws://\S+/subscribe)", timeout_s=120)
    return replay, match.group(1)


def start_ingest(env: dict[str, str], log: Path) -> ManagedProcess:
    """``streampulse ingest`` under ``prlimit --as``: a run-away allocation fails inside it."""
    argv = ["prlimit", f"--as={ADDRESS_SPACE_BYTES}", "--"]
    argv += [sys.executable, "-m", "streampulse.cli", "ingest"]
    return ManagedProcess(argv, env, log)


def stream_event_ids(data_dir: Path, synthetic_events: int) -> set[str]:
    """The event id of every event the replay serves: what must land in the raw topic."""
    settings = ReplaySettings(data_dir=data_dir, stream="mixed", synthetic_events=synthetic_events)
    return {event.event_id() for event in build_stream(settings).events}


def positions_hit(events: int, every: int) -> int:
    """How many positioned faults a stream of ``events`` carries (one after each N-th)."""
    return events // every if every else 0


class PeakMemory:
    """Samples a process's peak RSS (``VmHWM``) and address space (``VmPeak``) until it exits;
    the kernel keeps both peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.peak_virtual_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._done.wait(0.2):
            try:
                text = status.read_text()
            except OSError:
                return
            resident = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
            virtual = re.search(r"^VmPeak:\s+(\d+) kB", text, re.MULTILINE)
            if resident and virtual:
                self.peak_kib = max(self.peak_kib, int(resident.group(1)))
                self.peak_virtual_kib = max(self.peak_virtual_kib, int(virtual.group(1)))

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kib / 1024, 1)

    @property
    def peak_virtual_mb(self) -> float:
        return round(self.peak_virtual_kib / 1024, 1)

    def stop(self) -> float:
        self._done.set()
        self._thread.join(timeout=5)
        return self.peak_mb


def wait_until(
    condition: Callable[[], bool],
    deadline_s: float,
    what: str,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``condition`` until true; fail at the deadline, or as soon as ``process`` exits."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if process is not None and process.process.poll() is not None:
            raise AssertionError(
                f"{what}: the process exited {process.process.returncode}:\n"
                f"{process.output()[-3000:]}"
            )
        if time.monotonic() > deadline:
            tail = process.output()[-3000:] if process is not None else ""
            raise AssertionError(f"{what}: not within {deadline_s:.0f}s\n{tail}")
        time.sleep(0.25)


def topic_total(kafka: KafkaSettings, topic: str) -> int:
    try:
        return sum(topic_end_offsets(kafka, topic).values())
    except Exception:  # the topic does not exist yet, or its leader is being elected
        return 0


@dataclass
class RawCount:
    """What the raw topic holds against what was sent."""

    records: int
    ids: Counter[str]
    missing: set[str]

    @property
    def delivered(self) -> int:
        return len(self.ids)

    @property
    def duplicates(self) -> int:
        return self.records - len(self.ids)


def count_raw(kafka: KafkaSettings, expected: set[str]) -> RawCount:
    ids: Counter[str] = Counter()
    records = 0
    for record in read_topic(kafka, kafka.raw_topic):
        records += 1
        ids[orjson.loads(record.value)["event_id"]] += 1
    return RawCount(records, ids, expected - ids.keys())


def all_landed(kafka: KafkaSettings, expected: set[str]) -> Callable[[], bool]:
    """A condition: every expected event id is in the raw topic (cheap check first)."""

    def check() -> bool:
        if topic_total(kafka, kafka.raw_topic) < len(expected):
            return False
        return not count_raw(kafka, expected).missing

    return check


@dataclass
class DeadLetters:
    """The dead letters of the ingest stage, distinct (a rewound cursor can repeat one)."""

    records: int = 0
    distinct: dict[str, set[bytes]] = field(default_factory=dict)

    def count(self, reason: str) -> int:
        return len(self.distinct.get(reason, set()))

    @property
    def total(self) -> int:
        return sum(len(keys) for keys in self.distinct.values())


def read_dead_letters(kafka: KafkaSettings) -> DeadLetters:
    letters = DeadLetters()
    if topic_total(kafka, kafka.dlq_topic) == 0:
        return letters
    for record in read_topic(kafka, kafka.dlq_topic):
        letter, original = decode_dead_letter(record.value)
        assert letter["stage"] == "ingest", letter
        assert letter["error"], letter
        letters.records += 1
        # a frame too large to read has no bytes: its error names where it was
        key = original or letter["error"].encode()
        letters.distinct.setdefault(letter["reason"], set()).add(key)
    return letters


Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    """The worker's metrics: (name, labels, value) for each sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = []
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def summary_of(process: ManagedProcess) -> dict[str, object]:
    match = process.wait_for_output(r"ingest-summary (\{.*\})", timeout_s=30)
    summary: dict[str, object] = orjson.loads(match.group(1))
    return summary


@dataclass
class IngestRun:
    """One ingest process streamed until every event landed, then stopped: what it left."""

    process: ManagedProcess
    raw: RawCount
    letters: DeadLetters
    samples: Samples
    up_until_stopped: bool
    code: int
    memory: PeakMemory
    seconds: float  # from its start until every event had landed

    @property
    def outcome(self) -> Process:
        return "up" if self.up_until_stopped and self.code == 0 else "crashed"

    def summary(self) -> dict[str, object]:
        return summary_of(self.process)


def stream_through(
    register: Callable[[ManagedProcess], ManagedProcess],
    kafka: KafkaSettings,
    expected: set[str],
    env: dict[str, str],
    log: Path,
    *,
    also: tuple[str, Callable[[], bool]] | None = None,
) -> IngestRun:
    """Start ``streampulse ingest`` (limited, sampled), wait until every expected event and
    ``also`` hold, scrape its metrics, SIGTERM it, and count what landed."""
    ingest = register(start_ingest(env, log))
    memory = PeakMemory(ingest.process.pid)
    started = time.monotonic()
    wait_until(all_landed(kafka, expected), LANDED_DEADLINE_S, "all events", ingest)
    seconds = time.monotonic() - started
    if also is not None:
        wait_until(also[1], LANDED_DEADLINE_S, also[0], ingest)
    samples = scrape(int(env["STREAMPULSE_METRICS_PORT"]))
    up_until_stopped = ingest.process.poll() is None
    ingest.signal(signal.SIGTERM)
    code = ingest.wait(EXIT_DEADLINE_S)
    memory.stop()
    return IngestRun(
        ingest,
        count_raw(kafka, expected),
        read_dead_letters(kafka),
        samples,
        up_until_stopped,
        code,
        memory,
        seconds,
    )


@dataclass
class Broker:
    """A broker of the test's own that can be stopped, killed and restarted on the same port and
    log directory."""

    libs: Path
    data_dir: Path
    current: KafkaBroker

    @classmethod
    def start(cls, libs: Path, data_dir: Path) -> Broker:
        return cls(libs, data_dir, cls._launch(libs, data_dir, 0))

    @staticmethod
    def _launch(libs: Path, data_dir: Path, port: int) -> KafkaBroker:
        broker = KafkaBroker(
            libs=libs, data_dir=data_dir, port=port, heap_mb=512, startup_timeout_s=180
        )
        return broker.start()

    def signal(self, sig: signal.Signals) -> None:
        assert self.current.pid is not None
        os.killpg(self.current.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.current.stop()  # reaps it and closes its log

    def restart(self) -> None:
        self.current = self._launch(self.libs, self.data_dir, self.current.port)

    def stop(self) -> None:
        if self.current.pid is not None:
            self.signal(signal.SIGCONT)
        self.current.stop()


def watch_exit(process: ManagedProcess, deadline_s: float) -> tuple[int | None, float]:
    """The watchdog: a process's exit code and how long it took, or None if it is still running
    at the deadline (it neither rode the fault out nor exited: a hang)."""
    started = time.monotonic()
    try:
        code = process.process.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        return None, deadline_s
    return code, time.monotonic() - started
