"""The Flink job and its storage under faults (docs/reliability.md, items 5 and 6), with the real
engines: a KRaft broker of the test's own (killed and restarted on the same port and log
directory), the job on Flink's local mini-cluster, versitygw as the S3 store, tmpfs mounts that
fill.

Item 5: the broker SIGKILLed and restarted under a running job; the job SIGKILLed and restored
from its checkpoints on S3. Item 6: the warehouse's disk, then Kafka's log directory, full. In
each, ``volume_per_minute`` must equal what ``flinking.expected_volume`` computes from the events
sent (duplicates by ``event_id`` once) and ``enriched_posts`` must hold every post exactly once,
whatever was re-sent or replayed from a checkpoint. The job is exactly-once: each row is
``exactly_once`` and its duplicates count against it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from streampulse.kafka import ensure_topics
from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.kafka_broker import ensure_kafka
from streampulse.local.ports import free_port
from streampulse.settings import KafkaSettings, PaimonSettings, Settings
from tests.faults.flinking import (
    Event,
    Tally,
    checkpoints,
    closer,
    dashboard_panel,
    failed_checkpoints,
    failures,
    fill,
    produce,
    reader,
    stream,
    tally,
    tmpfs,
    wait_for,
)
from tests.faults.ingesting import Broker
from tests.faults.matrix import Process, Scenario
from tests.harness.flink import FlinkJob, flink_environment, latest_checkpoint
from tests.harness.s3 import S3Server

pytestmark = pytest.mark.faults

START_S = 300.0  # the job planned and running, on a loaded two-core machine
VISIBLE_S = 300.0  # produced events committed and read back (checkpoints every second)
OUTAGE_CHECKPOINTS = 2  # checkpoints the job completes while the broker is down
# Paimon's message when a restored job has committed its checkpoint's pending commit
PENDING_COMMIT = "intentionally thrown after committing the restored checkpoints"
PHASE_1, PHASE_2, PHASE_3 = stream(1, range(3)), stream(101, range(3, 6)), stream(201, range(6, 9))
# phase 3 for a full disk: 4 kB of random text a post, so it cannot fit in a page's leftover
LARGE_3 = stream(201, range(6, 9), text_bytes=4096)


@pytest.fixture
def broker(settings: Settings, tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own on a fixed port and log directory; stopped at the end."""
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    own = Broker.start(libs, tmp_path / "kafka")
    try:
        yield own
    finally:
        own.stop()


def topics(bootstrap_servers: str) -> KafkaSettings:
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        raw_topic=f"raw-{suffix}",
        enriched_topic=f"enriched-{suffix}",
        dlq_topic=f"dlq-{suffix}",
        partitions=1,  # event-time order within a topic: nothing is late
    )
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic])
    return kafka


def job_args(
    kafka: KafkaSettings, paimon: PaimonSettings, checkpoint_dir: str
) -> dict[str, object]:
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "raw_topic": kafka.raw_topic,
        "enriched_topic": kafka.enriched_topic,
        "group_id": f"flink-{uuid.uuid4().hex[:6]}",
        "warehouse": paimon.warehouse,
        "s3_endpoint": paimon.s3_endpoint,
        "s3_access_key": paimon.s3_access_key,
        "checkpoint_interval_ms": 1000,
        "checkpoint_dir": checkpoint_dir,
        "rest_port": free_port(),
    }


def start_job(args: dict[str, object], log: Path, paimon: PaimonSettings) -> tuple[FlinkJob, str]:
    secret = {"STREAMPULSE_PAIMON__S3_SECRET_KEY": paimon.s3_secret_key.get_secret_value()}
    job = FlinkJob(flink_environment(Settings().cache_dir), args, log, secret)
    try:
        return job, job.wait_started(START_S)
    except BaseException:
        job.stop()
        raise


def visible(lakehouse: Lakehouse, sent: list[Event], what: str) -> Tally:
    """Wait until the tables hold exactly ``sent`` (its closed minutes and every post); at the
    deadline, the last count, so the row records what was lost or duplicated."""
    read = reader(lakehouse)
    deadline = time.monotonic() + VISIBLE_S
    counted = tally(sent, read())
    while not counted.exact and time.monotonic() < deadline:
        time.sleep(0.5)
        counted = tally(sent, read())
    if not counted.exact:
        print(f"{what}: not exact within {VISIBLE_S:.0f} s: {counted}")
    return counted


def row(
    item: int,
    stage: str,
    fault: str,
    counted: Tally,
    process: Process,
    notes: str,
    extra: dict[str, float | int | str] | None = None,
) -> Scenario:
    scenario = Scenario(
        item=item,
        stage=stage,
        fault=fault,
        events_sent=counted.sent,
        delivered=counted.delivered,
        duplicated=counted.duplicated,
        lost=counted.lost,
        process=process,
        exactly_once=True,
        notes=notes,
        extra=extra or {},
    )
    scenario.write()
    return scenario


def test_broker_killed_and_restarted_under_a_running_job(broker: Broker, tmp_path: Path) -> None:
    kafka = topics(broker.current.bootstrap_servers)
    paimon = PaimonSettings(warehouse=str(tmp_path / "warehouse"))
    lakehouse = Lakehouse.open(paimon, tmp_path / "unused")
    args = job_args(kafka, paimon, (tmp_path / "checkpoints").as_uri())
    port = int(str(args["rest_port"]))
    job, job_id = start_job(args, tmp_path / "job.log", paimon)
    try:
        assert not produce(kafka, PHASE_1).failed
        assert_exact(visible(lakehouse, PHASE_1, "phase 1 committed"))
        # phase 2 acknowledged, then the broker dies at once: the job has read some of it or none
        assert not produce(kafka, PHASE_2).failed
        broker.kill()
        killed = time.monotonic()
        before = checkpoints(port, job_id)["completed"]
        wait_for(lambda: checkpoints(port, job_id)["completed"] >= before + OUTAGE_CHECKPOINTS,
                 120, "checkpoints while the broker is down")  # fmt: skip
        broker.restart()
        down_s = time.monotonic() - killed
        # phase 3, phase 1 and 2's first events again (duplicates across the outage), the closer
        again = [PHASE_1[0], PHASE_2[0], PHASE_2[1]]
        assert not produce(kafka, [*PHASE_3, *again, closer(8)]).failed
        sent = [*PHASE_1, *PHASE_2, *PHASE_3, *again, closer(8)]
        counted = visible(lakehouse, sent, "every phase committed after the broker's restart")
        alive = job.process.process.poll() is None
        state = dashboard_panel(port)
        numbers = checkpoints(port, job_id)
        job_restarts = len(failures(port, job_id))
        why = failed_checkpoints(port, job_id)
    finally:
        job.stop()
    row(5, "flink", "broker SIGKILLed and restarted on its log dir under a running job", counted,
        process="up" if alive and state["job_state"] == "RUNNING" else "crashed",
        notes=f"broker down {down_s:.0f} s; the job completed {numbers['completed']} "
        f"checkpoints ({numbers['failed']} failed: {dict(why)}), {job_restarts} restarts; "
        f"{len(again)} events re-sent",
        extra={"broker_down_s": round(down_s, 1), "job_restarts": job_restarts})  # fmt: skip
    assert alive
    assert state["job_state"] == "RUNNING", state
    assert_exact(counted)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with S3Server(tmp_path / "s3") as server:
        yield server


def test_job_killed_and_restored_from_checkpoints_on_s3(
    s3: S3Server, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = topics(kafka_settings.bootstrap_servers)
    paimon = PaimonSettings(
        warehouse=f"s3://{s3.bucket}/warehouse",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=SecretStr(s3.secret_key),
    )
    lakehouse = Lakehouse.open(paimon, tmp_path / "unused")
    args = job_args(kafka, paimon, f"s3://{s3.bucket}/checkpoints")
    on_s3 = s3.root / "data" / s3.bucket / "checkpoints"  # versitygw's files: objects as paths
    first, job_id = start_job(args, tmp_path / "job-1.log", paimon)
    try:
        assert not produce(kafka, PHASE_1).failed
        assert_exact(visible(lakehouse, PHASE_1, "phase 1 committed"))
        assert not produce(kafka, PHASE_2).failed  # read or not, committed or not: then killed
    finally:
        first.kill()
    killed = time.monotonic()
    restored = latest_checkpoint(on_s3, job_id)  # no checkpoint on the local disk: none named
    restore_from = f"s3://{s3.bucket}/checkpoints/{job_id}/{restored.name}"
    args = {**args, "restore_from": restore_from, "rest_port": free_port()}
    second, second_id = start_job(args, tmp_path / "job-2.log", paimon)
    try:
        again = [PHASE_1[0], PHASE_2[0]]  # committed before the kill, or replayed after it
        assert not produce(kafka, [*PHASE_3, *again, closer(8)]).failed
        sent = [*PHASE_1, *PHASE_2, *PHASE_3, *again, closer(8)]
        counted = visible(lakehouse, sent, "every phase committed after the restore")
        recovered_s = time.monotonic() - killed
        numbers = checkpoints(int(str(args["rest_port"])), second_id)
        wait_for(lambda: list((on_s3 / second_id).glob("chk-*/_metadata")), 60,
                 "the restored job's checkpoints on S3")  # fmt: skip
    finally:
        second.stop()
    # the kill fell between a checkpoint and its Paimon commit: the restored job commits it,
    # then restarts itself once on purpose (Paimon's writers start from the new snapshot)
    recommitted = PENDING_COMMIT in second.process.output()
    row(5, "flink", "job SIGKILLed, restored from its checkpoints on S3 (versitygw)", counted,
        process="exited",
        notes=f"SIGKILLed after phase 2 was produced; restored from {restored.name} on S3 "
        f"({numbers['restored']} restores; the checkpoint's pending Paimon commit "
        f"{'committed on restore' if recommitted else 'none'}); every event counted "
        f"{recovered_s:.0f} s after the kill; {len(again)} events re-sent",
        extra={"recovered_s": round(recovered_s, 1), "checkpoint": restored.name})  # fmt: skip
    assert numbers["restored"] >= 1, numbers  # from S3; once more after a pending commit
    assert_exact(counted)


def assert_exact(counted: Tally) -> None:
    assert counted.exact, counted
    assert counted.lost == 0, counted
    assert counted.duplicated == 0, counted


def failed_panel(port: int, before: int) -> dict[str, Any] | None:
    """The dashboard's checkpoint panel once it shows more failed checkpoints than ``before``."""
    panel = dashboard_panel(port)
    return panel if int(panel.get("failed") or 0) > before else None


def no_space(port: int, job_id: str) -> list[str]:
    return [f for f in failures(port, job_id) if "No space left on device" in f]


def test_disk_full_under_kafka_and_the_warehouse(settings: Settings, tmp_path: Path) -> None:
    """Kafka's log directory and the warehouse each on a small tmpfs, filled in turn; the
    checkpoints, the logs and the scratch files stay on the test's disk."""
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    with (
        tmpfs(tmp_path / "kafka" / "log", 96) as kafka_disk,
        tmpfs(tmp_path / "warehouse", 48) as warehouse,
    ):
        broker = Broker.start(libs, tmp_path / "kafka")
        try:
            warehouse_row, kafka_row = _fill_both(broker, kafka_disk, warehouse, tmp_path)
        finally:
            broker.stop()
    assert warehouse_row.process == "up", warehouse_row
    assert kafka_row.process == "exited", kafka_row


def _fill_both(
    broker: Broker, kafka_disk: Path, warehouse: Path, tmp_path: Path
) -> tuple[Scenario, Scenario]:
    kafka = topics(broker.current.bootstrap_servers)
    paimon = PaimonSettings(warehouse=str(warehouse))
    lakehouse = Lakehouse.open(paimon, tmp_path / "unused")
    args = job_args(kafka, paimon, (tmp_path / "checkpoints").as_uri())
    port = int(str(args["rest_port"]))
    job, job_id = start_job(args, tmp_path / "job.log", paimon)
    try:
        assert not produce(kafka, PHASE_1).failed
        assert_exact(visible(lakehouse, PHASE_1, "phase 1 committed"))

        # the warehouse full: phase 2 is in Kafka, and the job cannot write it
        failed_before = dashboard_panel(port)["failed"]  # failed triggers while starting up
        filler = fill(warehouse)
        assert not produce(kafka, PHASE_2).failed
        seen = wait_for(lambda: no_space(port, job_id), 180, "the job failing on a full disk")
        panel = wait_for(lambda: failed_panel(port, failed_before), 120,
                         "a failed checkpoint on the dashboard")  # fmt: skip
        logged = wait_for(lambda: "No space left on device" in job.process.output(), 60,
                          "the cause in the job's own log")  # fmt: skip
        unchanged = tally(PHASE_1, reader(lakehouse)())  # nothing partial became visible
        why = failed_checkpoints(port, job_id)
        filler.unlink()
        freed = time.monotonic()
        after = visible(lakehouse, [*PHASE_1, *PHASE_2], "phase 2 committed once space is freed")
        warehouse_row = row(
            6, "flink", "warehouse tmpfs full (48 MB) under a running job", after,
            process="up" if job.process.process.poll() is None else "crashed",
            notes=f"{len(seen)} failures 'No space left on device' in the job's exception "
            f"history, {panel['failed']} failed checkpoints on the dashboard panel "
            f"({dict(why)}), "
            f"tables unchanged while full ({unchanged.exact}); committed "
            f"{time.monotonic() - freed:.0f} s after space was freed, "
            f"{len(failures(port, job_id))} job restarts",
        )  # fmt: skip
        assert unchanged.exact
        assert logged
        assert_exact(after)

        # Kafka's log directory full: the broker stops, unacknowledged events are reported
        job_failures = len(failures(port, job_id))
        filler = fill(kafka_disk)
        delivery = produce(kafka, LARGE_3, timeout_s=30, log_level=2)
        code = broker.current.wait_exit(120)  # a failed log directory halts the broker
        log = broker.current.log_path.read_text(errors="replace")
        filler.unlink()
        broker.current.stop()
        broker.restart()
        failed = [e for e in LARGE_3 if e["event_id"] in set(delivery.failed)]
        again = produce(kafka, [*failed, closer(8)])
        assert not again.failed
        sent = [*PHASE_1, *PHASE_2, *LARGE_3, closer(8)]
        counted = visible(lakehouse, sent, "phase 3 committed after Kafka's restart")
        job_failures = len(failures(port, job_id)) - job_failures
        job_up = job.process.process.poll() is None
        kafka_row = row(
            6, "kafka", "Kafka log dir tmpfs full (96 MB) while producing", counted,
            process="exited" if code not in (None, 0) and "No space left" in log else "crashed",
            notes=f"broker exit {code} ('No space left on device' in its log); "
            f"{len(delivery.acked)} events acknowledged before, {len(delivery.failed)} reported "
            f"failed ({dict(delivery.errors)}) and re-sent after the restart; the job stayed "
            f"{'up' if job_up else 'DOWN'} ({job_failures} restarts)",
        )  # fmt: skip
        assert_exact(counted)
    finally:
        job.stop()
    return warehouse_row, kafka_row
