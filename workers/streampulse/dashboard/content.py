"""The 'Content intelligence' half of the dashboard: queries over the Paimon tables.

Every section is a plain JSON-able dict with a ``state``: ``ready``, ``waiting`` (its table does
not exist or has no committed snapshot yet: the job has not checkpointed) or ``error`` (the read
failed; the message says why). A failing section never takes the others, or the page, down.

"Recent" is measured in event time back from the newest data in each table, not from the wall
clock, so a replay of old captures shows the same as a live stream. Column names and meanings are
the Flink job's (``flink/streampulse_flink/tables.py``, ``docs/flink.md``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from streampulse.dashboard.times import iso, iso_ms
from streampulse.dashboard.warehouse import Snapshot
from streampulse.errors import LakehouseError
from streampulse.settings import DashboardSettings

log = logging.getLogger(__name__)

POST_COLLECTION = "app.bsky.feed.post"
# The tables the dashboard reads, in the order their commit times are reported.
TABLES = (
    "volume_per_minute",
    "toxicity_per_minute",
    "trending_entities",
    "trending_hashtags",
    "anomalies",
    "post_engagement",
    "author_activity",
    "enriched_posts",
)
# Reading post texts scans the text column of enriched_posts: at most this often.
TEXT_LOOKUP_INTERVAL_S = 60.0
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


def _waiting(table: str) -> Section:
    return {"state": "waiting", "message": f"no committed snapshot of {table} yet", "rows": []}


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
  MIN(window_start) AS since, MAX(window_start) AS until, COUNT(*) OVER () AS languages
FROM recent GROUP BY lang ORDER BY posts DESC, lang LIMIT {top_n}"""
        )
    )
    since = min((r["since"] for r in rows), default=None)
    until = max((r["until"] for r in rows), default=None)
    return {
        "state": "ready",
        "window_minutes": window_min,
        "since": iso(since),
        "until": iso(until),
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


class ContentReader:
    """Builds the content sections: at most once per half refresh, and the queries run again
    only when a table has a new snapshot."""

    def __init__(
        self,
        source: Source,
        settings: DashboardSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self._sections: dict[str, Any] = {}
        self._sections_key: tuple[tuple[str, int | None], ...] | None = None
        self._texts: dict[str, str] = {}
        self._texts_looked_up_at = 0.0
        self._texts_snapshot: int | None = None

    def snapshots(self) -> dict[str, Snapshot | None]:
        """Latest snapshot of each dashboard table that exists."""
        present = set(self._source.tables())
        return {name: self._source.snapshot(name) for name in TABLES if name in present}

    def content(self) -> dict[str, Any]:
        """The whole 'Content intelligence' payload (never raises)."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached_at < self._settings.refresh_s / 2:
                return self._cached
            self._cached = self._build(now)
            self._cached_at = now
            return self._cached

    def _build(self, now: float) -> dict[str, Any]:
        base: dict[str, Any] = {
            "generated_at": iso_ms(int(now * 1000)),
            "warehouse": self._source.location,
            "refresh_s": self._settings.refresh_s,
            "window_minutes": self._settings.window_min,
            "top_n": self._settings.top_n,
        }
        try:
            snapshots = self.snapshots()
        except LakehouseError as exc:
            log.warning("warehouse unreadable: %s", exc)
            return {**base, "state": "error", "message": str(exc), "snapshots": {}}
        committed = {k: v for k, v in snapshots.items() if v is not None}
        base["snapshots"] = {
            name: {"id": s.id, "committed_at": iso_ms(s.committed_ms)}
            for name, s in committed.items()
        }
        if committed:
            newest_ms = max(s.committed_ms for s in committed.values())
            base["freshness"] = {
                "newest_commit_at": iso_ms(newest_ms),
                "commit_age_s": round(max(now - newest_ms / 1000, 0.0), 1),
            }
        else:
            message = (
                "waiting for the first checkpoint: no table of the job has been committed yet"
                if snapshots
                else "waiting for the first checkpoint: the job has not created its tables yet"
            )
            return {**base, "state": "waiting", "message": message}
        key = tuple((name, s.id if s else None) for name, s in snapshots.items())
        if self._sections_key != key:
            self._sections = self._sections_for(snapshots)
            self._sections_key = key
        viral = self._sections["viral_posts"]
        if viral["state"] == "ready":
            self._add_texts(viral["rows"], snapshots.get("enriched_posts"), now)
        return {**base, "state": "ready", **self._sections}

    def _sections_for(self, snapshots: dict[str, Snapshot | None]) -> dict[str, Any]:
        s = self._settings
        builders: dict[str, tuple[str, Callable[[], Section]]] = {
            "posts_per_minute": (
                "volume_per_minute",
                lambda: posts_per_minute(self._source, s.window_min),
            ),
            "toxicity_by_language": (
                "toxicity_per_minute",
                lambda: toxicity_by_language(self._source, s.window_min, s.top_n),
            ),
            "trending_entities": (
                "trending_entities",
                lambda: trending(self._source, "trending_entities", ("entity", "label"), s.top_n),
            ),
            "trending_hashtags": (
                "trending_hashtags",
                lambda: trending(self._source, "trending_hashtags", ("hashtag",), s.top_n),
            ),
            "anomalies": ("anomalies", lambda: anomalies(self._source, s.top_n)),
            "viral_posts": (
                "post_engagement",
                lambda: viral_posts(self._source, s.window_min, s.top_n),
            ),
            "bot_accounts": (
                "author_activity",
                lambda: bot_accounts(self._source, s.window_min, s.top_n, s.bot_score_threshold),
            ),
        }
        sections: dict[str, Any] = {}
        for name, (table, build) in builders.items():
            if snapshots.get(table) is None:
                sections[name] = _waiting(table)
                continue
            try:
                sections[name] = build()
            except LakehouseError as exc:
                log.warning("%s: %s", name, exc)
                sections[name] = {"state": "error", "message": str(exc), "rows": []}
        return sections

    def _add_texts(self, rows: list[Section], posts: Snapshot | None, now: float) -> None:
        """Fill in post texts from enriched_posts (cached; looked up again on new data only)."""
        missing = {r["post_uri"] for r in rows if r["post_uri"] not in self._texts}
        due = (
            self._texts_snapshot is None or now - self._texts_looked_up_at >= TEXT_LOOKUP_INTERVAL_S
        )
        if missing and posts is not None and posts.id != self._texts_snapshot and due:
            try:
                table = self._source.read("enriched_posts", ["event_id", "text"])
                self._texts.update(texts_by_uri(table, missing))
                self._texts_snapshot, self._texts_looked_up_at = posts.id, now
            except LakehouseError as exc:
                log.warning("post texts: %s", exc)
        wanted = {r["post_uri"] for r in rows}
        self._texts = {uri: text for uri, text in self._texts.items() if uri in wanted}
        for row in rows:
            row["text"] = self._texts.get(row["post_uri"])

    def newest_commit(self) -> dict[str, Any] | None:
        """The newest commit over the dashboard's tables (a stand-in for checkpoint age)."""
        snapshots = {k: v for k, v in self.snapshots().items() if v is not None}
        if not snapshots:
            return None
        table, newest = max(snapshots.items(), key=lambda item: item[1].committed_ms)
        return {
            "table": table,
            "snapshot_id": newest.id,
            "completed_at": iso_ms(newest.committed_ms),
            "age_s": round(max(self._clock() - newest.committed_ms / 1000, 0.0), 1),
        }
