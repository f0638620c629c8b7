"""Ingest under faults (docs/reliability.md, items 1 and 2), with the real engines: the replay
server and the ingest worker as processes, a real KRaft broker.

Item 1: the replay server injects bad frames and a silent socket; the worker runs under an
address-space limit (``prlimit --as``) with its peak RSS sampled, must stay up, dead-letter each
bad frame with its reason, keep its reconnects bounded and deliver every good event.
Item 2: the broker is stopped or killed under the worker; the worker rides it out or exits
non-zero within its delivery timeout, and a restart resumes with no gap. A watchdog deadline
turns a process that neither exits nor progresses into a ``hung`` row and a failure.

Ingest is at-least-once: duplicates (from a reconnect's rewound cursor) are allowed, counted and
reported; downstream stages deduplicate by ``event_id``.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streampulse.local.kafka_broker import ensure_kafka
from streampulse.local.ports import free_port
from streampulse.settings import KafkaSettings, Settings
from tests.faults.ingesting import (
    ADDRESS_SPACE_BYTES,
    EXIT_DEADLINE_S,
    LANDED_DEADLINE_S,
    Broker,
    all_landed,
    count_raw,
    ingest_env,
    metric_sum,
    positions_hit,
    read_dead_letters,
    start_ingest,
    start_replay,
    stream_event_ids,
    stream_through,
    topic_total,
    wait_until,
    watch_exit,
)
from tests.faults.matrix import Process, Scenario
from tests.harness.processes import ManagedProcess

pytestmark = pytest.mark.faults

SYNTHETIC = 3000  # generated events after the 166 captured ones
Register = Callable[[ManagedProcess], ManagedProcess]


@pytest.fixture
def processes() -> Iterator[Register]:
    """Register processes to stop when the test ends, whatever happens."""
    started: list[ManagedProcess] = []

    def register(process: ManagedProcess) -> ManagedProcess:
        started.append(process)
        return process

    yield register
    for process in reversed(started):
        process.stop()


def _replay(register: Register, data_dir: Path, log: Path, **faults: object) -> str:
    replay, url = start_replay(data_dir, log, synthetic_events=SYNTHETIC, rate="max", **faults)
    register(replay)
    return url


def _env(kafka: KafkaSettings, url: str, data_dir: Path, **ingest: object) -> dict[str, str]:
    dictionary = data_dir / "zstd_dictionary_v1.bin"
    return ingest_env(kafka, url, dictionary, metrics_port=free_port(), **ingest)


# -- item 1: bad frames and silent sockets -----------------------------------------------------


@dataclass(frozen=True)
class FrameFault:
    name: str
    fault: str  # the row's description
    setting: str  # the replay server's setting that injects it after every N-th event
    every: int
    reason: str  # the dead letter's reason


FRAME_FAULTS = [
    FrameFault(
        "zstd_bomb",
        "zstd frames whose header declares 4 GiB (decompression bombs)",
        "bomb_every",
        500,
        "oversized_event",
    ),
    FrameFault(
        "oversized_frame",
        "16 MiB frames, over the 4 MiB websocket limit",
        "oversized_every",
        800,
        "oversized_frame",
    ),
    FrameFault(
        "deep_nesting",
        "records nested 512 / 2048 deep (past orjson's encoder / decoder)",
        "deep_every",
        400,
        "too_deep",
    ),
]


@pytest.mark.parametrize("fault", FRAME_FAULTS, ids=[f.name for f in FRAME_FAULTS])
def test_bad_frames_become_dead_letters_within_a_memory_limit(
    fault: FrameFault,
    jetstream_data_dir: Path,
    kafka_settings: KafkaSettings,
    processes: Register,
    tmp_path: Path,
) -> None:
    expected = stream_event_ids(jetstream_data_dir, SYNTHETIC)
    hits = positions_hit(len(expected), fault.every)
    url = _replay(
        processes, jetstream_data_dir, tmp_path / "replay.log", **{fault.setting: fault.every}
    )
    run = stream_through(
        processes,
        kafka_settings,
        expected,
        _env(kafka_settings, url, jetstream_data_dir),
        tmp_path / "ingest.log",
        also=(
            f"{hits} dead letters {fault.reason}",
            lambda: read_dead_letters(kafka_settings).count(fault.reason) >= hits,
        ),
    )
    letters = run.letters.count(fault.reason)
    reconnects = metric_sum(run.samples, "streampulse_ingest_reconnects_total")
    counted = metric_sum(
        run.samples, "streampulse_dead_letters_total", stage="ingest", reason=fault.reason
    )
    Scenario(
        item=1,
        stage="ingest",
        fault=fault.fault,
        events_sent=len(expected) + hits,
        delivered=run.raw.delivered,
        dead_lettered=letters,
        duplicated=run.raw.duplicates,
        lost=len(run.raw.missing) + hits - letters,
        process=run.outcome,
        notes=f"peak RSS {run.memory.peak_mb} MB under --as={ADDRESS_SPACE_BYTES >> 20} MiB; "
        f"{int(reconnects)} reconnects; {int(counted)} counted in the metric",
        extra={
            "peak_rss_mb": run.memory.peak_mb,
            "peak_address_space_mb": run.memory.peak_virtual_mb,
            "reconnects": int(reconnects),
            "metric": int(counted),
        },
    ).write()

    assert run.outcome == "up", run.process.output()[-3000:]
    assert run.raw.missing == set()
    assert letters == hits
    assert set(run.letters.distinct) == {fault.reason}
    assert counted >= hits  # a rewound cursor may meet a bad frame twice: at least once each
    assert run.summary()["dead_letters"] == run.letters.records
    if fault.reason == "oversized_frame":
        # each costs two reconnects: past it with a size filter, then at once without
        assert reconnects <= 2 * run.letters.records, run.summary()
    else:
        assert reconnects == 0, run.summary()
    assert run.memory.peak_mb < 256


def test_a_silent_socket_is_aborted_after_the_idle_timeout(
    jetstream_data_dir: Path, kafka_settings: KafkaSettings, processes: Register, tmp_path: Path
) -> None:
    """The server stops sending after 1000 events of each connection, but keeps it open and
    answers pings: only the worker's idle timeout notices."""
    expected = stream_event_ids(jetstream_data_dir, SYNTHETIC)
    silent_after, idle_s = 1000, 2.0
    url = _replay(processes, jetstream_data_dir, tmp_path / "replay.log", silent_after=silent_after)
    env = _env(kafka_settings, url, jetstream_data_dir, idle_timeout_s=idle_s)
    run = stream_through(processes, kafka_settings, expected, env, tmp_path / "ingest.log")
    idle = metric_sum(run.samples, "streampulse_ingest_reconnects_total", cause="idle")
    Scenario(
        item=1,
        stage="ingest",
        fault=f"a socket open but silent after {silent_after} events (idle timeout {idle_s} s)",
        events_sent=len(expected),
        delivered=run.raw.delivered,
        duplicated=run.raw.duplicates,
        lost=len(run.raw.missing),
        process=run.outcome,
        notes=f"{int(idle)} idle-timeout reconnects; every event in {run.seconds:.0f} s; "
        f"peak RSS {run.memory.peak_mb} MB",
        extra={"idle_reconnects": int(idle), "seconds": round(run.seconds, 1)},
    ).write()

    assert run.outcome == "up", run.process.output()[-3000:]
    assert run.raw.missing == set()
    # each connection delivers up to silent_after events, less the rewound margin
    assert idle >= len(expected) // silent_after
    assert run.seconds < (idle + 2) * (idle_s * 1.25 + 5)  # detected within the timeout
    assert "aborting the connection" in run.process.output()


def test_an_endpoint_that_never_answers_the_handshake_is_failed_over(
    jetstream_data_dir: Path, kafka_settings: KafkaSettings, processes: Register, tmp_path: Path
) -> None:
    """The first endpoint accepts TCP connections (the kernel does, from its backlog) and never
    answers the websocket handshake: the connect timeout moves the worker to the next one."""
    expected = stream_event_ids(jetstream_data_dir, SYNTHETIC)
    connect_s = 2.0
    url = _replay(processes, jetstream_data_dir, tmp_path / "replay.log")
    with socket.create_server(("127.0.0.1", 0), backlog=64) as black_hole:
        silent_url = f"ws://127.0.0.1:{black_hole.getsockname()[1]}/subscribe"
        env = _env(kafka_settings, url, jetstream_data_dir, connect_timeout_s=connect_s)
        env["STREAMPULSE_JETSTREAM__ENDPOINTS"] = orjson.dumps([silent_url, url]).decode()
        run = stream_through(processes, kafka_settings, expected, env, tmp_path / "ingest.log")
    refused = metric_sum(
        run.samples, "streampulse_ingest_reconnects_total", endpoint=silent_url, cause="refused"
    )
    Scenario(
        item=1,
        stage="ingest",
        fault=f"an endpoint that accepts TCP, never answers the handshake ({connect_s:.0f} s)",
        events_sent=len(expected),
        delivered=run.raw.delivered,
        duplicated=run.raw.duplicates,
        lost=len(run.raw.missing),
        process=run.outcome,
        notes=f"failed over after {int(refused)} timed-out handshake(s); every event in "
        f"{run.seconds:.0f} s",
        extra={"refused": int(refused), "seconds": round(run.seconds, 1)},
    ).write()

    assert run.outcome == "up", run.process.output()[-3000:]
    assert run.raw.missing == set()
    assert refused >= 1
    assert run.raw.duplicates == 0  # one connection to the replay server, from the start


# -- item 2: the broker stopped, killed, restarted ---------------------------------------------

BROKER_EVENTS = 4000  # generated events of the broker scenarios, at a fixed rate
BROKER_RATE = 250  # events per second: the stream lasts about 17 s, faults land mid-stream
DELIVERY_TIMEOUT_S = 8.0  # the worker's delivery timeout in the scenarios that outlast it
RIDE_OUT_TIMEOUT_S = 240.0  # ... and in the one it must ride out (a broker restart is ~10-60 s)


@pytest.fixture
def own_broker(settings: Settings, tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own: the shared one must not be stopped under other tests."""
    broker = Broker.start(
        ensure_kafka(settings.cache_dir, settings.local.kafka_version), tmp_path / "kafka"
    )
    try:
        yield broker
    finally:
        broker.stop()


def _broker_scenario(
    fault: str,
    broker: Broker,
    data_dir: Path,
    tmp_path: Path,
    register: Register,
    inject: Callable[[], None],
    heal: Callable[[], None],
    *,
    delivery_timeout_s: float,
    expect_exit: bool,
    at_fraction: float,
) -> None:
    """Stream at a fixed rate, inject the fault once ``at_fraction`` of the events landed, heal
    it (after the worker exited, when it is expected to), restart the worker if it exited (as a
    supervisor or the kubelet would), and count what landed."""
    expected = stream_event_ids(data_dir, BROKER_EVENTS)
    kafka = KafkaSettings(
        bootstrap_servers=broker.current.bootstrap_servers,
        raw_topic="raw-broker-faults",
        dlq_topic="dlq-broker-faults",
        partitions=3,
        delivery_timeout_ms=int(delivery_timeout_s * 1000),
    )
    replay, url = start_replay(
        data_dir, tmp_path / "replay.log", synthetic_events=BROKER_EVENTS, rate=BROKER_RATE
    )
    register(replay)
    env = _env(kafka, url, data_dir)
    first = register(start_ingest(env, tmp_path / "ingest-1.log"))
    wait_until(
        lambda: topic_total(kafka, kafka.raw_topic) >= len(expected) * at_fraction,
        LANDED_DEADLINE_S,
        f"{at_fraction:.0%} of the events",
        first,
    )
    injected_at = time.monotonic()
    inject()
    exit_deadline_s = delivery_timeout_s + 60.0
    code, exited_after_s = watch_exit(first, exit_deadline_s) if expect_exit else (None, 0.0)
    heal()
    down_s = time.monotonic() - injected_at  # stopped or dead until healed
    final = first
    if code is not None:
        final = register(start_ingest(env, tmp_path / "ingest-2.log"))
        final.wait_for_output("resuming from cursor", timeout_s=180)
    try:
        wait_until(all_landed(kafka, expected), LANDED_DEADLINE_S, "all events", final)
        landed = True
    except AssertionError:  # not within the deadline, or the worker exited
        landed = False
    hung = not landed and final.process.poll() is None
    final.signal(signal.SIGTERM)
    stopped = None if hung else final.wait(EXIT_DEADLINE_S)
    raw = count_raw(kafka, expected)
    process: Process = "crashed"
    if hung or (expect_exit and code is None):
        process = "hung"
    elif landed and stopped == 0 and (code not in (None, 0) if expect_exit else final is first):
        process = "exited" if expect_exit else "up"
    Scenario(
        item=2,
        stage="ingest",
        fault=fault,
        events_sent=len(expected),
        delivered=raw.delivered,
        duplicated=raw.duplicates,
        lost=len(raw.missing),
        process=process,
        notes=(
            f"exited {code} {exited_after_s:.1f} s after the fault (delivery timeout "
            f"{delivery_timeout_s:.0f} s; broker back after {down_s:.0f} s); restarted, resumed "
            "from the raw topic's tail"
            if expect_exit
            else f"rode out {down_s:.0f} s without a broker (delivery timeout "
            f"{delivery_timeout_s:.0f} s)"
        ),
        extra={
            "exited_after_s": round(exited_after_s, 1),
            "fault_at_fraction": at_fraction,
            "broker_down_s": round(down_s, 1),
        },
    ).write()

    assert not hung, final.output()[-3000:]
    assert landed, final.output()[-3000:]
    if expect_exit:
        assert code is not None, f"no exit within {exit_deadline_s:.0f} s: a hang"
        assert code != 0
        assert exited_after_s <= delivery_timeout_s + 30.0
        assert "Kafka acknowledged nothing" in first.output()
    assert stopped == 0, final.output()[-3000:]
    assert raw.missing == set()
    assert process in ("up", "exited")


def test_broker_stopped_past_the_delivery_timeout(
    own_broker: Broker, jetstream_data_dir: Path, processes: Register, tmp_path: Path
) -> None:
    _broker_scenario(
        f"broker SIGSTOPped past the {DELIVERY_TIMEOUT_S:.0f} s delivery timeout as the source "
        "goes quiet, then SIGCONT",
        own_broker,
        jetstream_data_dir,
        tmp_path,
        processes,
        inject=lambda: own_broker.signal(signal.SIGSTOP),
        heal=lambda: own_broker.signal(signal.SIGCONT),
        delivery_timeout_s=DELIVERY_TIMEOUT_S,
        expect_exit=True,
        at_fraction=0.9,  # the stream ends within seconds: only a timer sees the stall
    )


def test_broker_killed_and_down_past_the_delivery_timeout(
    own_broker: Broker, jetstream_data_dir: Path, processes: Register, tmp_path: Path
) -> None:
    _broker_scenario(
        f"broker SIGKILLed, down past the {DELIVERY_TIMEOUT_S:.0f} s delivery timeout, "
        "restarted on its log dir",
        own_broker,
        jetstream_data_dir,
        tmp_path,
        processes,
        inject=own_broker.kill,
        heal=own_broker.restart,
        delivery_timeout_s=DELIVERY_TIMEOUT_S,
        expect_exit=True,
        at_fraction=0.25,
    )


def test_broker_killed_and_restarted_is_ridden_out(
    own_broker: Broker, jetstream_data_dir: Path, processes: Register, tmp_path: Path
) -> None:
    def kill_and_restart() -> None:
        own_broker.kill()
        own_broker.restart()

    _broker_scenario(
        "broker SIGKILLed and restarted on its log dir within the delivery timeout",
        own_broker,
        jetstream_data_dir,
        tmp_path,
        processes,
        inject=kill_and_restart,
        heal=lambda: None,
        delivery_timeout_s=RIDE_OUT_TIMEOUT_S,
        expect_exit=False,
        at_fraction=0.25,
    )
