"""No secret in logs, files, checkpoints or pages (item 9): the Flink job writes its tables to a
real S3 server whose secret key contains a quote; the key must reach the catalog as one SQL
literal (the job writes) and appear nowhere else: not in the job's log, its scratch files, its
checkpoints or the tables' files, nor in the dashboard's API, pages or log."""

from __future__ import annotations

import json
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from streampulse.enrich.records import ENTITIES, SENTIMENT, TOXICITY, enriched_record
from streampulse.events import NormalizedEvent
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics, producer_config
from streampulse.lakehouse.reading import Lakehouse
from streampulse.settings import KafkaSettings, PaimonSettings, Settings
from tests.faults.matrix import SecurityCheck
from tests.harness.dashboard_data import start_dashboard, stop_cleanly
from tests.harness.flink import FlinkJob, flink_environment, wait_until
from tests.harness.s3 import S3Server

pytestmark = pytest.mark.faults

PREDICTIONS = {
    TOXICITY: {"label": "toxic", "score": 0.2, "scores": {"toxic": 0.2}},
    ENTITIES: {"entities": []},
    SENTIMENT: {"label": "neutral", "score": 0.6},
}
VERSIONS = {TOXICITY: "1", ENTITIES: "1", SENTIMENT: "1"}


def _captured(data_dir: Path, count: int) -> list[NormalizedEvent]:
    events: list[NormalizedEvent] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if b'"app.bsky.feed.post"' in line and b'"operation":"create"' in line:
                events.append(normalize(line, 1_800_000_000_000_000))
                if len(events) == count:
                    return events
    return events


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3")
    server.secret_key = f"{secrets.token_hex(8)}'{secrets.token_hex(8)}"  # a quote inside
    with server:
        yield server


def test_the_s3_secret_stays_out_of_logs_files_checkpoints_and_pages(
    s3: S3Server,
    kafka_settings: KafkaSettings,
    settings: Settings,
    jetstream_data_dir: Path,
    tmp_path: Path,
) -> None:
    secret = s3.secret_key
    needles = [secret.encode(), secret.replace("'", "''").encode(), json.dumps(secret).encode()]
    env = flink_environment(settings.cache_dir)
    kafka = kafka_settings.model_copy(update={"partitions": 1})
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic])
    paimon = PaimonSettings(
        warehouse=f"s3://{s3.bucket}/warehouse",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=SecretStr(secret),
    )
    events = _captured(jetstream_data_dir, 20)
    producer = Producer(producer_config(kafka, client_id="secrets-test"))
    for event in events:
        producer.produce(kafka.raw_topic, orjson.dumps(event), event["did"].encode())
        record = enriched_record(dict(event), PREDICTIONS, VERSIONS, 1_800_000_001_000_000)
        producer.produce(kafka.enriched_topic, record, event["did"].encode())
    assert producer.flush(30) == 0
    checkpoints = tmp_path / "checkpoints"
    job = FlinkJob(
        env,
        {
            "bootstrap_servers": kafka.bootstrap_servers,
            "raw_topic": kafka.raw_topic,
            "enriched_topic": kafka.enriched_topic,
            "group_id": f"flink-{uuid.uuid4().hex[:6]}",
            "warehouse": paimon.warehouse,
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "checkpoint_interval_ms": 1000,
            "checkpoint_dir": checkpoints.as_uri(),
        },
        tmp_path / "job.log",
        {"STREAMPULSE_PAIMON__S3_SECRET_KEY": secret},
    )
    lakehouse = Lakehouse.open(paimon, tmp_path / "unused")
    try:
        job.wait_started()
        wait_until(
            lambda: (
                lakehouse.query("SELECT count(*) AS n FROM enriched_posts").table.to_pylist()
                if "enriched_posts" in lakehouse.tables()
                else []
            ),
            lambda rows: bool(rows) and rows[0]["n"] == len(events),
            300,
            "the posts in enriched_posts on S3",
        )
        in_scratch = _files_containing(job.scratch_dir, needles)
    finally:
        job.stop()
    in_log = [needle for needle in needles if needle in (tmp_path / "job.log").read_bytes()]
    in_checkpoints = _files_containing(checkpoints, needles)
    in_tables = _files_containing(s3.root / "data", needles)
    job_clean = not (in_log or in_scratch or in_checkpoints or in_tables)
    SecurityCheck(
        item=9,
        check="an S3 secret with a quote reaches the catalog (the job writes its tables on S3)",
        passed=True,
    ).write()
    SecurityCheck(
        item=9,
        check="the secret is in none of the job's log, scratch files, checkpoints, table files",
        passed=job_clean,
        detail=f"log {bool(in_log)}, scratch {in_scratch[:3]}, checkpoints {in_checkpoints[:3]}, "
        f"tables {in_tables[:3]}",
    ).write()
    assert in_log == []
    assert in_scratch == []
    assert in_checkpoints == []
    assert in_tables == []
    assert list(checkpoints.rglob("_metadata")), "the job completed no checkpoint"

    process, url = start_dashboard(
        tmp_path,
        {
            "STREAMPULSE_PAIMON__WAREHOUSE": paimon.warehouse,
            "STREAMPULSE_PAIMON__S3_ENDPOINT": s3.endpoint,
            "STREAMPULSE_PAIMON__S3_ACCESS_KEY": s3.access_key,
            "STREAMPULSE_PAIMON__S3_SECRET_KEY": secret,
        },
    )
    try:
        pages = b""
        for path in ("", "api/content", "api/pipeline", "healthz", "static/dashboard.js", "x"):
            try:
                with urllib.request.urlopen(url + path, timeout=30) as response:
                    pages += response.read()
            except urllib.error.HTTPError as exc:
                pages += exc.read()
        content = json.loads(urllib.request.urlopen(url + "api/content", timeout=30).read())
    finally:
        stop_cleanly(process)
    dashboard_log = (tmp_path / "dashboard.log").read_bytes()
    leaked = [n for n in needles if n in pages or n in dashboard_log]
    SecurityCheck(
        item=9,
        check="the dashboard's API, pages and log carry no secret",
        passed=not leaked and content["state"] == "ready",
        detail=f"state {content['state']}",
    ).write()
    assert content["state"] == "ready", content
    assert leaked == []
