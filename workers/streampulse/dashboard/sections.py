"""The content panels, one query each over the Flink job's Paimon tables, as JSON-able dicts.

Every builder takes a :class:`Source` (the warehouse) and answers a dict with ``state: ready``;
a failed read raises :class:`~streampulse.errors.LakehouseError` for the caller to report.
"Recent" is measured in event time back from the newest data in each table, not from the wall
clock, so a replay of old captures shows the same as a live stream. Column names and meanings are
the job's (``flink/streampulse_flink/tables.py``, ``docs/flink.md``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from streampulse.dashboard.times import iso
from streampulse.dashboard.warehouse import Snapshot

POST_COLLECTION = "app.bsky.feed.post"
TEXT_MAX_CHARS = 500

Section = dict[str, Any]


class Source(Protocol):
    """What the dashboard needs of the warehouse (``Warehouse``; a fake in unit tests)."""

    location: str

    def tables(self) -> list[str]: ...

    def query(self, sql: str) -> pa.Table: ...

    def read(self, name: str, columns: list[str]) -> pa.Table: ...

    def snapshot(self, name: str) -> Snapshot | None: ...


def _num(value: Any, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def post_uri(event_id: str) -> str:
    """``did/collection/rkey@rev`` (a commit's event id) -> ``at://did/collection/rkey``."""
    return "at://" + event_id.split("@", 1)[0]


def post_link(uri: str) -> str | None:
    """The bsky.app page of an ``at://did/app.bsky.feed.post/rkey`` post, when it is one."""
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or parts[1] != POST_COLLECTION:
        return None
    return f"https://bsky.app/profile/{parts[0]}/post/{parts[2]}"


def fill_minutes(rows: list[dict[str, Any]], newest: datetime, window_min: int) -> list[Section]:
    """One point per minute from the first row (at most ``window_min`` minutes back) to
    ``newest``; a minute without a row had no posts."""
    by_minute = {row["window_start"]: row for row in rows}
    first = min(by_minute, default=newest)
    span = min(int((newest - first).total_seconds() // 60) + 1, window_min)
    points = []
    for back in range(span - 1, -1, -1):
        minute = newest - timedelta(minutes=back)
        row = by_minute.get(minute, {})
        points.append(
            {
                "minute": iso(minute),
                "posts": int(row.get("posts") or 0),
                "deletes": int(row.get("deletes") or 0),
            }
        )
    return points


def posts_per_minute(source: Source, window_min: int) -> Section:
    """Post creates per event minute (all languages) over the newest ``window_min`` minutes."""
    rows = _rows(
        source.query(
            f"""WITH p AS (
  SELECT window_start, SUM(creates) AS posts, SUM(deletes) AS deletes
  FROM volume_per_minute WHERE collection = '{POST_COLLECTION}' GROUP BY window_start)
SELECT * FROM p
WHERE window_start > (SELECT MAX(window_start) FROM p) - INTERVAL {window_min} MINUTE
ORDER BY window_start"""
        )
    )
    if not rows:
        return {"state": "ready", "window_minutes": window_min, "points": [], "newest": None}
    newest = rows[-1]["window_start"]
    points = fill_minutes(rows, newest, window_min)
    total = sum(p["posts"] for p in points)
    return {
        "state": "ready",
        "window_minutes": window_min,
        "newest": iso(newest),
        "minutes": len(points),
        "points": points,
        "latest_posts": points[-1]["posts"],
        "total_posts": total,
        "mean_per_minute": round(total / len(points), 2),
    }


def toxicity_by_language(source: Source, window_min: int, top_n: int) -> Section:
    """Per language over the newest ``window_min`` minutes: posts, toxic posts, posts-weighted
    mean toxicity and the highest per-minute p95; the ``top_n`` languages by posts."""
    rows = _rows(
        source.query(
            f"""WITH recent AS (
  SELECT * FROM toxicity_per_minute
  WHERE window_start > (SELECT MAX(window_start) FROM toxicity_per_minute)
    - INTERVAL {window_min} MINUTE)
SELECT lang, SUM(posts) AS posts, SUM(toxic_posts) AS toxic_posts,
  SUM(mean_toxicity * posts) / SUM(posts) AS mean_toxicity, MAX(p95_toxicity) AS p95_toxicity,
  MIN(MIN(window_start)) OVER () AS since, MAX(MAX(window_start)) OVER () AS until,
  COUNT(*) OVER () AS languages
FROM recent GROUP BY lang ORDER BY posts DESC, lang LIMIT {top_n}"""
        )
    )
    return {
        "state": "ready",
        "window_minutes": window_min,
        "since": iso(rows[0]["since"]) if rows else None,
        "until": iso(rows[0]["until"]) if rows else None,
        "languages": int(rows[0]["languages"]) if rows else 0,
        "rows": [
            {
                "lang": r["lang"],
                "posts": int(r["posts"]),
                "toxic_posts": int(r["toxic_posts"]),
                "toxic_share": round(int(r["toxic_posts"]) / int(r["posts"]), 6)
                if r["posts"]
                else 0.0,
                "mean_toxicity": _num(r["mean_toxicity"]),
                "p95_toxicity": _num(r["p95_toxicity"]),
            }
            for r in rows
        ],
    }


def trending(source: Source, table: str, keys: tuple[str, ...], top_n: int) -> Section:
    """The ``top_n`` of the trending window that covers the newest minute of data.

    Windows slide by a minute; the newest ``window_start`` holds only the newest minute, so the
    window shown is the one ending a minute after it (the last full window, e.g. 15 minutes).
    A table holding only one window per start (no such window) shows its newest start instead.
    """
    order = ", ".join(keys)
    rows = _rows(
        source.query(
            f"""WITH newest AS (SELECT MAX(window_start) AS ws FROM {table}),
chosen AS (SELECT COALESCE(
  (SELECT MAX(window_start) FROM {table}
   WHERE window_end = (SELECT ws FROM newest) + INTERVAL 1 MINUTE),
  (SELECT ws FROM newest)) AS ws)
SELECT window_start, window_end, {order}, posts, authors FROM {table}
WHERE window_start = (SELECT ws FROM chosen)
ORDER BY posts DESC, authors DESC, {order} LIMIT {top_n}"""
        )
    )
    return {
        "state": "ready",
        "window_start": iso(rows[0]["window_start"]) if rows else None,
        "window_end": iso(rows[0]["window_end"]) if rows else None,
        "rows": [
            {**{k: r[k] for k in keys}, "posts": int(r["posts"]), "authors": int(r["authors"])}
            for r in rows
        ],
    }


def anomalies(source: Source, top_n: int) -> Section:
    """The newest ``top_n`` anomalous minutes (volume or toxicity spikes), newest first."""
    rows = _rows(
        source.query(
            f"""SELECT metric, window_start, value, trailing_minutes, trailing_mean,
  trailing_stddev, z_score FROM anomalies
ORDER BY window_start DESC, z_score DESC, metric LIMIT {top_n}"""
        )
    )
    return {
        "state": "ready",
        "rows": [
            {
                "metric": r["metric"],
                "window_start": iso(r["window_start"]),
                "value": _num(r["value"]),
                "trailing_minutes": int(r["trailing_minutes"] or 0),
                "trailing_mean": _num(r["trailing_mean"]),
                "trailing_stddev": _num(r["trailing_stddev"]),
                "z_score": _num(r["z_score"], 3),
            }
            for r in rows
        ],
    }


def viral_posts(source: Source, window_min: int, top_n: int) -> Section:
    """Posts of the newest ``window_min`` minutes (by post time) ranked by viral velocity."""
    rows = _rows(
        source.query(
            f"""SELECT post_uri, did, posted_at, likes, reposts, replies, last_engagement_at,
  viral_velocity FROM post_engagement
WHERE posted_at > (SELECT MAX(posted_at) FROM post_engagement) - INTERVAL {window_min} MINUTE
ORDER BY viral_velocity DESC, post_uri LIMIT {top_n}"""
        )
    )
    return {
        "state": "ready",
        "window_minutes": window_min,
        "rows": [
            {
                "post_uri": r["post_uri"],
                "link": post_link(r["post_uri"]),
                "did": r["did"],
                "posted_at": iso(r["posted_at"]),
                "likes": int(r["likes"] or 0),
                "reposts": int(r["reposts"] or 0),
                "replies": int(r["replies"] or 0),
                "last_engagement_at": iso(r["last_engagement_at"]),
                "viral_velocity": _num(r["viral_velocity"], 3),
                "text": None,
            }
            for r in rows
        ],
    }


def bot_accounts(source: Source, window_min: int, top_n: int, threshold: float) -> Section:
    """Accounts by bot score over the author hours starting within ``window_min`` minutes of the
    newest hour (the current, partial hour and the previous one with the default 60): each
    account once, in its highest-scoring hour."""
    rows = _rows(
        source.query(
            f"""WITH recent AS (
  SELECT * FROM author_activity
  WHERE window_start >= (SELECT MAX(window_start) FROM author_activity)
    - INTERVAL {window_min} MINUTE),
best AS (SELECT *, ROW_NUMBER() OVER (
  PARTITION BY did ORDER BY bot_score DESC, window_start DESC) AS rank_no FROM recent)
SELECT did, window_start, posts, replies, likes, reposts, follows, distinct_targets,
  mean_toxicity, mean_interval_s, bot_score
FROM best WHERE rank_no = 1 AND bot_score IS NOT NULL
ORDER BY bot_score DESC, did LIMIT {top_n}"""
        )
    )
    counts = ("posts", "replies", "likes", "reposts", "follows", "distinct_targets")
    return {
        "state": "ready",
        "threshold": threshold,
        "rows": [
            {
                "did": r["did"],
                "hour": iso(r["window_start"]),
                **{k: int(r[k] or 0) for k in counts},
                "mean_toxicity": _num(r["mean_toxicity"]),
                "mean_interval_s": _num(r["mean_interval_s"], 1),
                "bot_score": _num(r["bot_score"], 3),
                "likely": float(r["bot_score"]) >= threshold,
            }
            for r in rows
        ],
    }


def texts_by_uri(posts: pa.Table, uris: set[str]) -> dict[str, str]:
    """The texts of the wanted posts, from ``enriched_posts`` read as ``event_id, text``."""
    if posts.num_rows == 0 or not uris:
        return {}
    wanted = pa.array(sorted(u.removeprefix("at://") for u in uris))
    keys = pc.list_element(pc.split_pattern(posts["event_id"], "@", max_splits=1), 0)
    found = posts.filter(pc.is_in(keys, value_set=wanted))
    return {
        post_uri(row["event_id"]): (row["text"] or "")[:TEXT_MAX_CHARS] for row in found.to_pylist()
    }
