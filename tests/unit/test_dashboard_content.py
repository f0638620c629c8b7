"""The content half of the dashboard: the queries over the job's tables and how they are shaped.

The tables are in-memory Arrow tables with the job's schemas (``tests/harness/warehouse.py``
reads them from ``flink/streampulse_flink/tables.py``), queried by DuckDB as the dashboard's
warehouse would; the Paimon round trip itself is the integration test's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from streampulse.dashboard.content import ContentReader
from streampulse.dashboard.sections import (
    bot_accounts,
    fill_minutes,
    post_link,
    post_uri,
    posts_per_minute,
    texts_by_uri,
    toxicity_by_language,
    trending,
    viral_posts,
)
from streampulse.dashboard.warehouse import Snapshot
from streampulse.errors import LakehouseError
from streampulse.settings import DashboardSettings
from tests.harness.dashboard_rows import toxicity_row, volume_row
from tests.harness.warehouse import arrow_schema

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 9, 0)
POST = "app.bsky.feed.post"


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


class FakeSource:
    """Job tables in memory; every query and read is recorded."""

    location = "memory://warehouse"

    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.data = {
            name: pa.Table.from_pylist(r, schema=arrow_schema(name)) for name, r in rows.items()
        }
        self.snapshots: dict[str, Snapshot | None] = {name: Snapshot(1, 1_000_000) for name in rows}
        self.queries: list[str] = []
        self.reads: list[tuple[str, list[str]]] = []
        self.failing: set[str] = set()

    def tables(self) -> list[str]:
        return sorted(self.data)

    def query(self, sql: str) -> pa.Table:
        self.queries.append(sql)
        if any(name in sql for name in self.failing):
            raise LakehouseError("query failed: disk on fire")
        connection = duckdb.connect()
        for name, table in self.data.items():
            connection.register(name, table)
        result = connection.sql(sql).arrow()
        return result.read_all() if isinstance(result, pa.RecordBatchReader) else result

    def read(self, name: str, columns: list[str]) -> pa.Table:
        self.reads.append((name, columns))
        return self.data[name].select(columns)

    def snapshot(self, name: str) -> Snapshot | None:
        return self.snapshots.get(name)


def volume(m: int, lang: str, creates: int, collection: str = POST) -> dict[str, Any]:
    return volume_row(minute(m), lang, creates, collection)


def tox(m: int, lang: str, posts: int, toxic: int, mean: float, p95: float) -> dict[str, Any]:
    return toxicity_row(minute(m), lang, posts, toxic, mean, p95)


def window(start: int, width: int = 15, **row: Any) -> dict[str, Any]:
    return {"window_start": minute(start), "window_end": minute(start + width), **row}


def test_posts_per_minute_counts_back_from_the_newest_minute() -> None:
    source = FakeSource(
        {
            "volume_per_minute": [
                volume(0, "en", 100),  # 70 minutes before the newest: outside a 60-minute window
                volume(62, "en", 3),
                volume(62, "ja", 2),
                volume(65, "en", 7),
                volume(70, "und", 4),
                volume(70, "-", 500, collection="app.bsky.feed.like"),
            ]
        }
    )
    section = posts_per_minute(source, window_min=60)
    assert section["newest"] == "2026-03-01T10:10:00Z"
    assert section["minutes"] == 9  # from the first minute in the window to the newest
    assert [p["posts"] for p in section["points"]] == [5, 0, 0, 7, 0, 0, 0, 0, 4]
    assert section["points"][0]["minute"] == "2026-03-01T10:02:00Z"
    assert section["latest_posts"] == 4
    assert section["total_posts"] == 16
    assert section["mean_per_minute"] == round(16 / 9, 2)


def test_fill_minutes_never_spans_more_than_the_window() -> None:
    rows = [{"window_start": minute(0), "posts": 1}, {"window_start": minute(10), "posts": 2}]
    points = fill_minutes(rows, minute(10), window_min=5)
    assert [p["minute"][11:16] for p in points] == ["09:06", "09:07", "09:08", "09:09", "09:10"]
    assert [p["posts"] for p in points] == [0, 0, 0, 0, 2]


def test_toxicity_by_language_weights_means_by_posts_over_the_window() -> None:
    source = FakeSource(
        {
            "toxicity_per_minute": [
                tox(0, "en", 1000, 900, 0.9, 1.0),  # too old for a 30-minute window
                tox(40, "en", 10, 2, 0.2, 0.65),
                tox(41, "en", 30, 3, 0.1, 0.55),
                tox(41, "ja", 50, 0, 0.05, 0.1),
                tox(45, "pt", 5, 5, 0.8, 0.95),
            ]
        }
    )
    section = toxicity_by_language(source, window_min=30, top_n=2)
    assert section["since"] == "2026-03-01T09:40:00Z"
    assert section["until"] == "2026-03-01T09:45:00Z"
    assert section["languages"] == 3
    assert section["rows"] == [
        {
            "lang": "ja",
            "posts": 50,
            "toxic_posts": 0,
            "toxic_share": 0.0,
            "mean_toxicity": 0.05,
            "p95_toxicity": 0.1,
        },
        {
            "lang": "en",
            "posts": 40,
            "toxic_posts": 5,
            "toxic_share": 0.125,
            "mean_toxicity": 0.125,  # (10 * 0.2 + 30 * 0.1) / 40
            "p95_toxicity": 0.65,
        },
    ]


def test_trending_shows_the_window_that_ends_after_the_newest_minute() -> None:
    rows = []
    for start in range(-14, 1):  # every window holding minute 0, the newest
        rows.append(window(start, entity="lisbon", label="LOC", posts=20 + start, authors=3))
        rows.append(window(start, entity="<b>x</b>", label="ORG", posts=9, authors=9))
    rows.append(window(-20, entity="old news", label="MISC", posts=99, authors=99))
    source = FakeSource({"trending_entities": rows})
    section = trending(source, "trending_entities", ("entity", "label"), top_n=10)
    assert (section["window_start"], section["window_end"]) == (
        "2026-03-01T08:46:00Z",
        "2026-03-01T09:01:00Z",
    )
    assert section["rows"] == [
        {"entity": "<b>x</b>", "label": "ORG", "posts": 9, "authors": 9},
        {"entity": "lisbon", "label": "LOC", "posts": 6, "authors": 3},
    ]


def test_trending_falls_back_to_the_newest_start_and_ranks_ties_by_name() -> None:
    rows = [
        window(5, width=60, hashtag="b", posts=2, authors=1),
        window(5, width=60, hashtag="a", posts=2, authors=1),
        window(5, width=60, hashtag="c", posts=3, authors=1),
    ]
    section = trending(
        FakeSource({"trending_hashtags": rows}), "trending_hashtags", ("hashtag",), 2
    )
    assert section["window_start"] == "2026-03-01T09:05:00Z"
    assert [r["hashtag"] for r in section["rows"]] == ["c", "a"]


def engagement(rkey: str, posted: int, velocity: float) -> dict[str, Any]:
    return {
        "post_uri": f"at://did:plc:a/{POST}/{rkey}",
        "did": "did:plc:a",
        "posted_at": minute(posted),
        "likes": 3,
        "reposts": 1,
        "replies": 0,
        "last_engagement_at": minute(posted + 2),
        "viral_velocity": velocity,
    }


def test_viral_posts_are_recent_posts_by_velocity() -> None:
    source = FakeSource(
        {
            "post_engagement": [
                engagement("old", 0, 100.0),
                engagement("a", 70, 2.5),
                engagement("b", 80, 7.25),
                engagement("c", 90, 1.0),
            ]
        }
    )
    section = viral_posts(source, window_min=60, top_n=2)
    assert [r["post_uri"].rsplit("/", 1)[1] for r in section["rows"]] == ["b", "a"]
    assert section["rows"][0]["link"] == "https://bsky.app/profile/did:plc:a/post/b"
    assert section["rows"][0]["viral_velocity"] == 7.25


def test_post_uris_and_links() -> None:
    assert post_uri(f"did:plc:x/{POST}/3kabc@3krev") == f"at://did:plc:x/{POST}/3kabc"
    assert (
        post_link(f"at://did:plc:x/{POST}/3kabc") == "https://bsky.app/profile/did:plc:x/post/3kabc"
    )
    assert post_link("at://did:plc:x/app.bsky.feed.like/1") is None
    assert post_link("javascript:alert(1)") is None


def test_texts_by_uri_matches_event_ids_to_post_uris() -> None:
    posts = pa.table(
        {
            "event_id": [
                f"did:plc:a/{POST}/1@r1",
                f"did:plc:a/{POST}/2@r2",
                f"did:plc:b/{POST}/1@r",
            ],
            "text": ["one", None, "x" * 2000],
        }
    )
    found = texts_by_uri(posts, {f"at://did:plc:a/{POST}/1", f"at://did:plc:b/{POST}/1"})
    assert found == {f"at://did:plc:a/{POST}/1": "one", f"at://did:plc:b/{POST}/1": "x" * 500}


def activity(hour: int, did: str, score: float, follows: int = 0) -> dict[str, Any]:
    return {
        "window_start": T0 + timedelta(hours=hour),
        "did": did,
        "posts": 10,
        "replies": 0,
        "likes": 5,
        "reposts": 0,
        "follows": follows,
        "distinct_targets": 3,
        "mean_toxicity": None,
        "first_post_at": None,
        "last_post_at": None,
        "mean_interval_s": None,
        "bot_score": score,
    }


def test_bot_accounts_rank_each_account_once_over_the_recent_hours() -> None:
    source = FakeSource(
        {
            "author_activity": [
                activity(0, "did:plc:ancient", 0.99),  # three hours before the newest
                activity(2, "did:plc:bot", 0.7, follows=4),
                activity(3, "did:plc:bot", 0.4),
                activity(3, "did:plc:human", 0.1),
            ]
        }
    )
    section = bot_accounts(source, window_min=60, top_n=10, threshold=0.5)
    assert [(r["did"], r["hour"], r["bot_score"], r["likely"]) for r in section["rows"]] == [
        ("did:plc:bot", "2026-03-01T11:00:00Z", 0.7, True),
        ("did:plc:human", "2026-03-01T12:00:00Z", 0.1, False),
    ]
    assert section["rows"][0]["follows"] == 4
    assert section["rows"][0]["mean_interval_s"] is None


def settings(**overrides: Any) -> DashboardSettings:
    return DashboardSettings(**{"refresh_s": 2.0, "consumer_groups": (), **overrides})


class Clock:
    def __init__(self) -> None:
        self.now = 2_000.0

    def __call__(self) -> float:
        return self.now


def test_empty_warehouse_is_waiting_not_an_error() -> None:
    reader = ContentReader(FakeSource({}), settings(), clock=Clock())
    content = reader.content()
    assert content["state"] == "waiting"
    assert "has not created its tables" in content["message"]
    assert reader.newest_commit() is None


def test_tables_without_snapshots_are_waiting_and_sections_wait_alone() -> None:
    source = FakeSource({"volume_per_minute": [volume(0, "en", 3)], "anomalies": []})
    source.snapshots = {"volume_per_minute": None, "anomalies": None}
    clock = Clock()
    reader = ContentReader(source, settings(), clock=clock)
    assert reader.content()["state"] == "waiting"
    assert "first checkpoint" in reader.content()["message"]

    source.snapshots["volume_per_minute"] = Snapshot(3, 1_999_000)
    clock.now += 5
    content = reader.content()
    assert content["state"] == "ready"
    assert content["freshness"] == {
        "newest_commit_at": "1970-01-01T00:33:19Z",
        "commit_age_s": 6.0,
    }
    assert content["posts_per_minute"]["total_posts"] == 3
    assert content["anomalies"]["state"] == "waiting"
    assert content["toxicity_by_language"] == {
        "state": "waiting",
        "message": "no committed snapshot of toxicity_per_minute yet",
        "rows": [],
    }
    assert reader.newest_commit() == {
        "table": "volume_per_minute",
        "snapshot_id": 3,
        "completed_at": "1970-01-01T00:33:19Z",
        "age_s": 6.0,
    }


def test_a_failing_section_leaves_the_others() -> None:
    source = FakeSource(
        {
            "volume_per_minute": [volume(0, "en", 3)],
            "toxicity_per_minute": [tox(0, "en", 1, 0, 0.1, 0.1)],
        }
    )
    source.failing = {"toxicity_per_minute"}
    content = ContentReader(source, settings(), clock=Clock()).content()
    assert content["state"] == "ready"
    assert content["toxicity_by_language"]["state"] == "error"
    assert "disk on fire" in content["toxicity_by_language"]["message"]
    assert content["posts_per_minute"]["total_posts"] == 3


def test_queries_run_again_only_on_new_snapshots_and_texts_are_cached() -> None:
    source = FakeSource(
        {
            "post_engagement": [engagement("a", 0, 2.0)],
            "enriched_posts": [
                {"event_id": f"did:plc:a/{POST}/a@r", "did": "did:plc:a", "text": "<i>hi</i>"}
            ],
        }
    )
    clock = Clock()
    reader = ContentReader(source, settings(), clock=clock)
    first = reader.content()
    assert first["viral_posts"]["rows"][0]["text"] == "<i>hi</i>"
    assert source.reads == [("enriched_posts", ["event_id", "text"])]
    queries = len(source.queries)

    clock.now += 0.5  # within half a refresh: the same payload
    assert reader.content() is first
    clock.now += 5  # a refresh, same snapshots: no query, no read
    again = reader.content()
    assert len(source.queries) == queries
    assert again["viral_posts"]["rows"][0]["text"] == "<i>hi</i>"
    assert len(source.reads) == 1

    source.snapshots["post_engagement"] = Snapshot(2, 1_000_500)
    clock.now += 5
    reader.content()
    assert len(source.queries) > queries
    assert len(source.reads) == 1  # the text is known already
