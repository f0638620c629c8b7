"""The aggregates the local stack computes from the same capture, for comparison.

Definition: the raw and enriched topics are read back from the cluster's broker (every record of
every partition, through the toolbox pod), produced into a local Kafka broker partition for
partition in the same order with the same keys, headers and timestamps, and the Flink job runs
on them locally (``tests/harness/flink.py``'s launcher, the local mini-cluster, the same
parallelism and checkpoint interval) into a local Paimon warehouse. The cluster's tables must
then equal the local ones, every table, row for row.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pydantic import SecretStr

from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.local.ports import free_port
from streampulse.settings import PaimonSettings
from tests.harness.cluster import Cluster
from tests.harness.flink import FlinkJob, flink_environment, read_tables, wait_until
from tests.harness.pipeline import kube
from tests.harness.pipeline.images import KAFKA_VERSION, S3_PORT
from tests.harness.pipeline.infra import BUCKET, Infra, toolbox

DUMP = """
import base64, json, sys
from confluent_kafka import Consumer, TopicPartition
servers, topics = sys.argv[1], sys.argv[2:]
consumer = Consumer({"bootstrap.servers": servers, "group.id": "system-test-dump",
                     "enable.auto.commit": False, "enable.partition.eof": True})
for topic in topics:
    meta = consumer.list_topics(topic, timeout=20).topics[topic]
    for p in sorted(meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)
        consumer.assign([TopicPartition(topic, p, low)])
        offset = low
        while offset < high:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error():
                    continue
                offset = m.offset() + 1
                print(json.dumps({"topic": topic, "partition": p, "offset": m.offset(),
                    "timestamp": m.timestamp()[1],
                    "key": base64.b64encode(m.key() or b"").decode() if m.key() else None,
                    "value": base64.b64encode(m.value() or b"").decode(),
                    "headers": [[k, base64.b64encode(v or b"").decode()]
                                for k, v in (m.headers() or [])]}))
    print(json.dumps({"topic": topic, "partitions": len(meta.partitions)}))
consumer.close()
"""
TABLE_KEYS = "SELECT * FROM {table}"


@dataclass(frozen=True)
class TopicDump:
    records: list[dict[str, Any]]
    partitions: dict[str, int]

    def count(self, topic: str) -> int:
        return sum(1 for r in self.records if r["topic"] == topic)


def dump_topics(cluster: Cluster, infra: Infra, topics: list[str]) -> TopicDump:
    """Every record of ``topics`` on the cluster's broker, read from inside the cluster."""
    code = f"import sys\nsys.argv = ['dump', {infra.bootstrap_servers!r}, *{topics!r}]\n{DUMP}"
    out = kube.exec_python(cluster, infra.toolbox_namespace, toolbox(cluster, infra), code, 180)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    partitions = {x["topic"]: int(x["partitions"]) for x in lines if "partitions" in x}
    return TopicDump([x for x in lines if "value" in x], partitions)


def _decode(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def create_topics(servers: str, dump: TopicDump) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in dump.partitions.items()]
    )
    for future in futures.values():
        future.result(timeout=30)


def first_copies(dump: TopicDump) -> list[dict[str, Any]]:
    """Each event's first record per topic, in the order the cluster's broker received them.

    The ingest worker re-sends the last seconds of the capture each time it reconnects to the
    finished replay (at-least-once); the job drops such duplicates by ``event_id``, so they
    change no table and are left out."""
    seen: set[tuple[str, str]] = set()
    out = []
    for record in sorted(dump.records, key=lambda r: (r["timestamp"], r["topic"], r["offset"])):
        value = json.loads(base64.b64decode(record["value"]))
        key = (str(record["topic"]), str(value.get("event_id")))
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def produce_paced(servers: str, records: list[dict[str, Any]], per_second: float) -> None:
    """``records`` into a local broker as they arrived on the cluster's: same partitions, keys,
    headers and timestamps, in arrival order, ``per_second`` at most (the replay's rate)."""
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True,
                         "linger.ms": 0})  # fmt: skip
    for record in records:
        producer.produce(
            record["topic"], _decode(record["value"]), _decode(record["key"]),
            partition=record["partition"], timestamp=record["timestamp"],
            headers=[(k, base64.b64decode(v)) for k, v in record["headers"]],
        )  # fmt: skip
        producer.flush(10)
        time.sleep(1 / per_second)
    if producer.flush(60) != 0:
        raise AssertionError("records left unsent to the local broker")


def canonical(lakehouse: Lakehouse) -> dict[str, list[str]]:
    """Every table's rows as sorted JSON strings (the comparison's unit)."""
    tables = lakehouse.tables()
    rows = read_tables(lakehouse, [TABLE_KEYS.format(table=t) for t in tables])
    return {
        table: sorted(json.dumps(row, sort_keys=True, default=str) for row in found)
        for table, found in zip(tables, rows, strict=True)
    }


@contextmanager
def cluster_lakehouse(cluster: Cluster, infra: Infra) -> Iterator[Lakehouse]:
    """The cluster's warehouse on the S3 server, read through ``kubectl port-forward``."""
    service = f"svc/{infra.s3_service}"
    with kube.port_forward(cluster, infra.s3_namespace, service, S3_PORT) as port:
        settings = PaimonSettings(
            warehouse=f"s3://{BUCKET}/warehouse",
            s3_endpoint=f"http://127.0.0.1:{port}",
            s3_access_key=infra.access_key,
            s3_secret_key=SecretStr(infra.secret_key),
        )
        yield Lakehouse.open(settings, Path("/nonexistent"))


@contextmanager
def local_job(
    dump: TopicDump,
    workdir: Path,
    cache_dir: Path,
    checkpoint_ms: int,
    parallelism: int,
    per_second: float,
) -> Iterator[Lakehouse]:
    """A local broker and the Flink job on it; once the job runs, the dumped records arrive as
    they did on the cluster. Yields the local warehouse."""  # fmt: skip
    libs = ensure_kafka(cache_dir, KAFKA_VERSION)
    env = flink_environment(cache_dir)
    warehouse = workdir / "warehouse"
    rest_port = free_port()
    with KafkaBroker(libs=libs, data_dir=workdir / "kafka", heap_mb=512) as broker:
        create_topics(broker.bootstrap_servers, dump)
        job = FlinkJob(
            env,
            {
                "bootstrap_servers": broker.bootstrap_servers,
                "warehouse": warehouse,
                "checkpoint_interval_ms": checkpoint_ms,
                "parallelism": parallelism,
                "rest_port": rest_port,
            },
            workdir / "flink-job.log",
            extra_env={"JVM_ARGS": "-Xmx1024m"},
        )
        try:
            job.wait_started(timeout_s=300)
            wait_tasks_running(f"http://127.0.0.1:{rest_port}", timeout_s=180)
            produce_paced(broker.bootstrap_servers, first_copies(dump), per_second)
            yield Lakehouse.open(PaimonSettings(warehouse=str(warehouse)), warehouse)
        finally:
            job.stop()


def wait_tasks_running(rest: str, timeout_s: float) -> None:
    """Until the local job's every task is RUNNING (its sources read from the first record)."""

    def running() -> bool:
        with urllib.request.urlopen(f"{rest}/jobs/overview", timeout=5) as answer:
            jobs = json.loads(answer.read()).get("jobs") or []
        tasks = jobs[0].get("tasks", {}) if jobs else {}
        return bool(tasks) and tasks.get("running") == tasks.get("total")

    wait_until(running, bool, timeout_s, "every task of the local job RUNNING")


def wait_equal(
    cluster_side: Lakehouse, local_side: Lakehouse, posts: int, timeout_s: float
) -> dict[str, list[str]]:
    """Poll both warehouses until every table is equal and ``enriched_posts`` holds ``posts``
    rows; the tables. Fails with the tables that differ at the deadline."""
    deadline = time.monotonic() + timeout_s
    remote: dict[str, list[str]] = {}
    local: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        remote, local = canonical(cluster_side), canonical(local_side)
        if remote == local and len(remote.get("enriched_posts", [])) == posts:
            return remote
        time.sleep(3)
    differ = {
        t: (len(remote.get(t, [])), len(local.get(t, [])))
        for t in sorted(set(remote) | set(local))
        if remote.get(t) != local.get(t)
    }
    raise AssertionError(f"tables differ (cluster rows, local rows): {differ}")
