"""The 'Content intelligence' half of the dashboard: every panel, refreshed from the warehouse.

Every section is a plain JSON-able dict with a ``state``: ``ready``, ``waiting`` (its table does
not exist or has no committed snapshot yet: the job has not checkpointed) or ``error`` (the read
failed; the message says why). A failing section never takes the others, or the page, down.
The queries themselves are in :mod:`streampulse.dashboard.sections`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from streampulse.dashboard.sections import (
    Section,
    Source,
    anomalies,
    bot_accounts,
    posts_per_minute,
    texts_by_uri,
    toxicity_by_language,
    trending,
    viral_posts,
)
from streampulse.dashboard.times import iso_ms
from streampulse.dashboard.warehouse import Snapshot
from streampulse.errors import LakehouseError
from streampulse.settings import DashboardSettings

log = logging.getLogger(__name__)

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


def _waiting(table: str) -> Section:
    return {"state": "waiting", "message": f"no committed snapshot of {table} yet", "rows": []}


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
