"""The Flink job end to end: real Kafka, Flink's local mini-cluster, Paimon on the local disk
and on a real S3-compatible server (versitygw).

A crafted set of events, with answers computed by hand below, goes through the job in two
phases. Phase 1 has events out of order (within the 5 s watermark bound) and a duplicate; once
its closed minutes are visible in the tables, phase 2 sends an event whose minute has closed
(late) and another duplicate, then one event on each topic an hour later, whose watermark
closes every window before it. Every table is read back with pypaimon + DuckDB (what
``streampulse sql`` does) and compared exactly; Trino reads every table through the Iceberg
metadata Paimon publishes and must agree row for row, and on the local disk a Flink batch query
reads them too and must agree.

Windows of the trending tables are 2 minutes sliding by 1 and keep the top 1, so ties and top-N
order are visible in a few rows. The late event is left out of its closed minute and sliding
windows and counted in ``late_events``; the author's hour, still open, counts it. Phase 2 ends
with a burst of six actions by one author in minute 4: engagement on two earlier posts (one of
them duplicated in phase 1), a busy author hour, and a volume anomaly against the four minutes
before it (anomaly history is 10 minutes, at least 3 of them with data).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from streampulse.enrich.records import ENTITIES, TOXICITY, enriched_record
from streampulse.kafka import ensure_topics, producer_config
from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.iceberg_rest import warehouse_uri
from streampulse.settings import KafkaSettings, PaimonSettings, Settings
from tests.harness.dashboard_sql import for_duckdb, panel_queries
from tests.harness.flink import FlinkJob, flink_environment, query, read_tables, wait_until
from tests.harness.s3 import S3Server
from tests.harness.trino import TrinoStack

pytestmark = pytest.mark.integration

T0_US = int(datetime(2025, 1, 15, 12, 0, tzinfo=UTC).timestamp() * 1_000_000)
POST, LIKE, FOLLOW = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"
REPOST = "app.bsky.feed.repost"
TRINO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def at(minute: int, second: int) -> int:
    return T0_US + (minute * 60 + second) * 1_000_000


def raw(n: int, did: str, t: int, collection: str = POST, **fields: Any) -> dict[str, Any]:
    """A normalized event with every field present, as the ingest worker writes it."""
    event: dict[str, Any] = {
        "schema_version": 1, "event_id": f"{did}/{collection}/r{n}@v1", "did": did,
        "time_us": t, "kind": "commit", "operation": "create", "collection": collection,
        "rkey": f"r{n}", "rev": "v1", "cid": f"c{n}", "ingested_at_us": t + 1000,
        "text": None, "langs": [], "created_at": None, "reply_root": None,
        "reply_parent": None, "embed_type": None, "hashtags": [], "mentions": [], "links": [],
        "subject_uri": None, "subject_did": None, "handle": None, "active": None,
        "status": None, "record_json": None,
    }  # fmt: skip
    if collection == POST and fields.get("operation", "create") == "create":
        event["text"] = f"post {n}"
    event.update(fields)
    return event


def enriched(event: dict[str, Any], toxicity: float | None, entities: list[str]) -> bytes:
    """The enriched record exactly as the enrich worker serializes it."""
    predictions: dict[str, dict[str, Any]] = {}
    if toxicity is not None:
        predictions[TOXICITY] = {"label": "toxic", "scores": {"toxic": toxicity}}
    found = [{"text": e.split(":")[0], "label": e.split(":")[1], "start": 0, "end": 4,
              "score": 0.9} for e in entities]  # fmt: skip
    predictions[ENTITIES] = {"entities": found}
    return enriched_record(event, predictions, {TOXICITY: "1", ENTITIES: "1"}, event["time_us"])


A, B, C, D, E = (f"did:plc:{name}" for name in "abcde")
R1 = raw(1, A, at(0, 10), langs=["en"], hashtags=["rust"])
R2 = raw(2, B, at(0, 20), langs=["en"], hashtags=["Rust", "python"])
R3 = raw(3, A, at(0, 30), LIKE, subject_uri="at://x/app.bsky.feed.post/1")
R4 = raw(4, C, at(1, 5), langs=["ja"], hashtags=["rust"])
R5 = raw(5, B, at(1, 2), langs=[], hashtags=["python"])  # 3 s out of order: not late
R7 = raw(7, C, at(1, 30), FOLLOW, subject_did=D)
R8 = raw(8, A, at(2, 0), operation="delete")
R9 = raw(9, D, at(3, 0), langs=["en"], hashtags=["python"])  # watermark -> 12:02:55
R10 = raw(10, E, at(0, 40), langs=["en"], hashtags=["rust"])  # phase 2: late
R12 = raw(12, D, at(3, 10), langs=["en"])
# an hour later, on each topic: their watermark (13:00:05) closes every window of hour 12
CLOSE = raw(99, "did:plc:closer", at(60, 10), LIKE, subject_uri="at://x/app.bsky.feed.post/9")
CLOSE_POST = raw(98, "did:plc:closer", at(60, 10))


def uri(event: dict[str, Any]) -> str:
    return f"at://{event['did']}/{event['collection']}/{event['rkey']}"


# the burst: E, minute 4 (after R12, so none of it is late)
S1 = raw(21, E, at(4, 0), LIKE, subject_uri=uri(R1))
S2 = raw(22, E, at(4, 5), LIKE, subject_uri=uri(R2))
S3 = raw(23, E, at(4, 10), REPOST, subject_uri=uri(R1))
S4 = raw(24, E, at(4, 20), langs=["en"], reply_parent=uri(R1), reply_root=uri(R1))
S5 = raw(25, E, at(4, 30), FOLLOW, subject_did=A)
S6 = raw(26, E, at(4, 40), langs=["en"])

RAW_PHASE_1 = [R1, R2, R3, R4, R5, R2, R7, R8, R9]  # R2 twice
RAW_PHASE_2 = [R10, R4, R12, S1, S2, S3, S4, S5, S6, CLOSE]  # R4 again: a late duplicate
ENRICHED_PHASE_1 = [
    enriched(R1, 0.10, ["Rust:ORG"]),
    enriched(R2, 0.91, ["rust:ORG", "Alice:PER"]),
    enriched(R4, 0.33, []),
    enriched(R5, 0.62, []),
    enriched(R2, 0.91, ["rust:ORG", "Alice:PER"]),
    enriched(R9, 0.57, []),
]
ENRICHED_PHASE_2 = [
    enriched(R10, 0.72, ["Alice:PER"]),
    enriched(R12, None, []),
    enriched(CLOSE_POST, None, []),
]


def ts(minute: int) -> str:
    return f"2025-01-15T12:{minute:02d}:00" if minute >= 0 else f"2025-01-15T11:{60 + minute}:00"


# (window_start, collection, lang, events, creates, deletes, authors)
VOLUME = sorted([
    (ts(0), POST, "en", 2, 2, 0, 2),  # R1 R2 (R10 is late: its minute was written)
    (ts(0), LIKE, "-", 1, 1, 0, 1),
    (ts(1), POST, "ja", 1, 1, 0, 1),
    (ts(1), POST, "und", 1, 1, 0, 1),
    (ts(1), FOLLOW, "-", 1, 1, 0, 1),
    (ts(2), POST, "und", 1, 0, 1, 1),
    (ts(3), POST, "en", 2, 2, 0, 1),
    (ts(4), POST, "en", 2, 2, 0, 1),  # S4 (a reply) S6
    (ts(4), LIKE, "-", 2, 2, 0, 1),
    (ts(4), REPOST, "-", 1, 1, 0, 1),
    (ts(4), FOLLOW, "-", 1, 1, 0, 1),
])  # fmt: skip
# (window_start, lang, posts, toxic_posts, mean, p95: upper edge of a 0.05 bucket)
TOXICITY_ROWS = [
    (ts(0), "en", 2, 1, (0.10 + 0.91) / 2, 0.95),  # not R10 (late)
    (ts(1), "ja", 1, 0, 0.33, 0.35),
    (ts(1), "und", 1, 1, 0.62, 0.65),
    (ts(3), "en", 1, 1, 0.57, 0.60),
]
# top 1 of 2-minute windows: (window_start, window_end, hashtag, posts, authors)
HASHTAGS = [
    (ts(-1), ts(1), "rust", 2, 2),  # R1 R2 (R10 came after both windows of minute 0 closed)
    (ts(0), ts(2), "rust", 3, 3),  # R1 R2 R4
    (ts(1), ts(3), "python", 1, 1),  # ties rust (R4) 1/1: name order
    (ts(2), ts(4), "python", 1, 1),
    (ts(3), ts(5), "python", 1, 1),
]
# rust (R1 R2) beats Alice (R2; the late R10 is not in these closed windows)
ENTITY_ROWS = [
    (ts(-1), ts(1), "rust", "ORG", 2, 2),
    (ts(0), ts(2), "rust", "ORG", 2, 2),
]
LATE = [("enriched", ts(0), 1), ("raw", ts(0), 1)]
HOUR = "2025-01-15T12:00:00"


def bot(actions: int, mean_interval_s: float | None, follows: int) -> float:
    """The documented bot score: volume, cadence and follow share."""
    cadence = 0.0 if mean_interval_s is None else max(1 - mean_interval_s / 60, 0.0)
    return 0.5 * min(actions / 120, 1.0) + 0.3 * cadence + 0.2 * follows / actions


def t(minute: int, second: int) -> str:
    return f"2025-01-15T12:{minute:02d}:{second:02d}"


# (did, posts, replies, likes, reposts, follows, distinct_targets, mean_toxicity,
#  first_post_at, last_post_at, mean_interval_s, bot_score); the hour is 12:00 for all.
# Creates only (A's delete R8 is not an action); targets are the DIDs acted on.
ACTIVITY = [
    (A, 1, 0, 1, 0, 0, 1, 0.10, t(0, 10), t(0, 10), None, bot(2, None, 0)),  # R1; R3 -> x
    (B, 2, 0, 0, 0, 0, 0, (0.91 + 0.62) / 2, t(0, 20), t(1, 2), 42.0, bot(2, 42.0, 0)),
    (C, 1, 0, 0, 0, 1, 1, 0.33, t(1, 5), t(1, 5), None, bot(2, None, 1)),  # R7 -> D
    (D, 2, 0, 0, 0, 0, 0, 0.57, t(3, 0), t(3, 10), 10.0, bot(2, 10.0, 0)),  # R12 unscored
    # R10 (late), S4 (reply), S6: 240 s over 2 intervals; targets A (S1 S3 S4 S5) and B (S2)
    (E, 2, 1, 2, 1, 1, 2, 0.72, t(0, 40), t(4, 40), 120.0, bot(7, 120.0, 1)),
]
# (post_uri, did, posted_at, likes, reposts, replies, last_engagement_at, viral_velocity):
# (likes + 2 reposts + 3 replies) per minute from the post to its latest engagement
ENGAGEMENT = [
    (uri(R1), A, t(0, 10), 1, 1, 1, t(4, 20), 6 / (250 / 60)),
    (uri(R2), B, t(0, 20), 1, 0, 0, t(4, 5), 1 / (225 / 60)),  # R2 sent twice, liked once
]
# volume per minute: 3 (R1 R2 R3), 3, 1, 2, then 6 in minute 4; minute 3 (z = -0.35) is not
# one; toxicity has data in minutes 0, 1 and 3 only: never 3 trailing minutes
# (metric, window_start, value, trailing_minutes, trailing_mean, trailing_stddev, z_score)
ANOMALIES = [("volume", ts(4), 6.0, 4, 2.25, 0.6875**0.5, 3.75 / 0.6875**0.5)]

QUERIES = [
    "SELECT event_id, is_late, toxicity, dt FROM enriched_posts",
    "SELECT * FROM volume_per_minute",
    "SELECT * FROM toxicity_per_minute",
    "SELECT * FROM trending_hashtags",
    "SELECT * FROM trending_entities",
    "SELECT * FROM late_events",
    "SELECT * FROM author_activity",
    "SELECT * FROM post_engagement",
    "SELECT * FROM anomalies",
]


def _produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = Producer(producer_config(kafka, client_id="flink-test"))
    for value in values:
        producer.produce(topic, value=value, key=b"k")
    assert producer.flush(30) == 0


def _rows(rows: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row[c] for c in columns) for row in rows)


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    """A Trino row, its timestamps (``2025-01-15 12:00:00.000000``) as the readers print them."""
    return {
        key: datetime.fromisoformat(value).isoformat()
        if isinstance(value, str) and TRINO_TIMESTAMP.fullmatch(value)
        else value
        for key, value in row.items()
    }


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Numbers as floats to 9 decimals: two engines may sum in another order, and one engine's
    sum of integers may be another's double."""
    return {
        key: round(float(value), 9)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for key, value in row.items()
    }


def _sorted(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode() for row in rows)


def _assert_rows(rows: list[dict[str, Any]], expected: list[tuple[Any, ...]]) -> None:
    """Rows in key order equal ``expected`` column by column (floats to rounding error)."""
    assert len(rows) == len(expected), rows
    for row, want in zip(sorted(rows, key=lambda r: tuple(r.values())[:2]), sorted(expected),
                         strict=True):  # fmt: skip
        got = tuple(row.values())
        assert len(got) == len(want), (got, want)
        for value, wanted in zip(got, want, strict=True):
            if isinstance(wanted, float):
                assert value == pytest.approx(wanted), (got, want)
            else:
                assert value == wanted, (got, want)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PaimonSettings]:
    """Where the warehouse lives: the local disk, or a bucket of a real S3-compatible server."""
    if request.param == "local":
        # a URI: Paimon writes the Iceberg metadata's paths as given, and Trino needs a scheme
        yield PaimonSettings(warehouse=warehouse_uri(str(tmp_path / "warehouse")))
        return
    with S3Server(tmp_path / "s3") as s3:
        yield PaimonSettings(
            warehouse=f"s3://{s3.bucket}/warehouse",
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=SecretStr(s3.secret_key),
        )


def test_exact_aggregates_with_disorder_lateness_and_duplicates(
    kafka_settings: KafkaSettings, settings: Settings, storage: PaimonSettings, tmp_path: Path
) -> None:
    env = flink_environment(settings.cache_dir)
    kafka = kafka_settings.model_copy(update={"partitions": 1})
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic])
    lakehouse = Lakehouse.open(storage, tmp_path / "unused")
    job = FlinkJob(
        env,
        {
            "bootstrap_servers": kafka.bootstrap_servers,
            "raw_topic": kafka.raw_topic,
            "enriched_topic": kafka.enriched_topic,
            "group_id": f"flink-{uuid.uuid4().hex[:6]}",
            "warehouse": storage.warehouse,
            "s3_endpoint": storage.s3_endpoint,
            "s3_access_key": storage.s3_access_key,
            "checkpoint_interval_ms": 1000,
            "checkpoint_dir": (tmp_path / "checkpoints").as_uri(),
            "trending_window_min": 2,
            "trending_top_n": 1,
            "anomaly_trailing_min": 10,
            "anomaly_min_history": 3,
        },
        tmp_path / "job.log",
        {"STREAMPULSE_PAIMON__S3_SECRET_KEY": storage.s3_secret_key.get_secret_value()},
    )
    panels = panel_queries(datetime(2025, 1, 15, 11), datetime(2025, 1, 15, 14))
    try:
        job.wait_started()  # the job has created its tables
        with TrinoStack(settings, storage, tmp_path / "trino") as trino:
            # every table is published before its first row: Trino knows it, and it is empty
            assert _on_trino(trino) == [[] for _ in QUERIES]
            tables = _run_both_phases(kafka, lakehouse)
            # Trino reads the Iceberg metadata Paimon writes after each commit: while the job
            # runs, it catches up with the tables' latest snapshot and then agrees row for row
            wait_until(
                lambda: (_on_trino(trino), [_sorted(r) for r in read_tables(lakehouse, QUERIES)]),
                lambda both: both[0] == both[1],
                60,
                "Trino agreeing with the tables under the running job",
            )
            job.stop()
            read = [_sorted(r) for r in read_tables(lakehouse, QUERIES)]
            if not storage.warehouse.startswith("s3://"):  # the engine that wrote them agrees
                flink_rows = query(env, storage.warehouse, QUERIES)
                assert [_sorted(r) for r in flink_rows] == read
            assert _on_trino(trino) == read
            # the content dashboard's panels, on Trino and on DuckDB (streampulse sql)
            for title, sql in panels.items():
                on_trino = _sorted([_rounded(_iso(row)) for row in trino.rows(sql)])
                (on_duckdb,) = read_tables(lakehouse, [for_duckdb(sql)])
                assert on_trino, f"{title}: no rows"
                assert on_trino == _sorted([_rounded(row) for row in on_duckdb]), title
    finally:
        job.stop()
    posts, volume, toxicity, hashtags, entities, late, activity, engagement, anomalies = tables

    assert _rows(posts, "event_id", "is_late", "dt") == sorted(
        (e["event_id"], e is R10, "2025-01-15") for e in [R1, R2, R4, R5, R9, R10, R12, CLOSE_POST]
    )
    assert _rows(volume, "window_start", "collection", "lang", "events", "creates", "deletes",
                 "authors") == VOLUME  # fmt: skip
    got = _rows(toxicity, "window_start", "lang", "posts", "toxic_posts", "mean_toxicity",
                "p95_toxicity")  # fmt: skip
    assert [row[:4] for row in got] == [row[:4] for row in TOXICITY_ROWS]
    for row, expected in zip(got, TOXICITY_ROWS, strict=True):
        assert row[4] == pytest.approx(expected[4])
        assert row[5] == pytest.approx(expected[5])
    assert _rows(hashtags, "window_start", "window_end", "hashtag", "posts", "authors") == HASHTAGS
    assert (
        _rows(entities, "window_start", "window_end", "entity", "label", "posts", "authors")
        == ENTITY_ROWS
    )
    assert _rows(late, "source", "window_start", "events") == LATE
    _assert_rows(activity, [(HOUR, *row) for row in ACTIVITY])
    _assert_rows(engagement, ENGAGEMENT)
    _assert_rows(anomalies, ANOMALIES)


def _on_trino(trino: TrinoStack) -> list[list[str]]:
    return [_sorted([_iso(row) for row in trino.rows(sql)]) for sql in QUERIES]


def _run_both_phases(kafka: KafkaSettings, lakehouse: Lakehouse) -> list[list[dict[str, Any]]]:
    """Phase 1, then phase 2, each waited for in the tables; the tables' rows at the end."""
    _produce(kafka, kafka.raw_topic, [orjson.dumps(e) for e in RAW_PHASE_1])
    _produce(kafka, kafka.enriched_topic, ENRICHED_PHASE_1)
    wait_until(
        lambda: read_tables(lakehouse, QUERIES[:2]),
        # minutes 0 and 1 have closed (the watermark is at 12:02:55)
        lambda r: len(r[0]) == 5 and sum(row["events"] for row in r[1]) == 6,
        240,
        "phase 1 visible",
    )
    _produce(kafka, kafka.raw_topic, [orjson.dumps(e) for e in RAW_PHASE_2])
    _produce(kafka, kafka.enriched_topic, ENRICHED_PHASE_2)
    tables: list[list[dict[str, Any]]] = wait_until(
        lambda: read_tables(lakehouse, QUERIES),
        lambda r: (
            len(r[0]) == 8
            and len(r[5]) == 2
            and sum(x["events"] for x in r[1]) == 15
            and len(r[2]) == 4
            and len(r[3]) == 5
            and len(r[4]) == 2
            and sum(x["posts"] + x["replies"] for x in r[6]) == 9
            and sum(x["likes"] + x["reposts"] + x["replies"] for x in r[7]) == 4
            and len(r[8]) == 1
        ),
        240,
        "phase 2 visible",
    )
    return tables
