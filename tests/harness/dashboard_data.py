"""The dashboard's test data: a Paimon warehouse filled table for table as the Flink job writes
it (minutes 0..4 of a replayed capture, with upserts and hostile payloads), and a dashboard
process to read it."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.harness.browser import dump_dom
from tests.harness.dashboard_rows import toxicity_row, volume_row
from tests.harness.processes import ManagedProcess
from tests.harness.warehouse import Warehouse

POST = "app.bsky.feed.post"
HOSTILE_ENTITY = "<script>window.pwned=1</script>"
HOSTILE_TEXT = '<img src=x onerror="window.pwned=1"> viral \u202etxet\u202c 🎉'
ACK_MS = 1_750_000_000_000
T0 = datetime(2025, 6, 1, 14, 0)  # replayed captures: event time is far behind the wall clock
POST = "app.bsky.feed.post"
HOSTILE_ENTITY = "<script>window.pwned=1</script>"
HOSTILE_TEXT = '<img src=x onerror="window.pwned=1"> viral \u202etxet\u202c 🎉'
ACK_MS = 1_750_000_000_000


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def volume(m: int, lang: str, creates: int, collection: str = POST) -> dict[str, Any]:
    return volume_row(minute(m), lang, creates, collection)


def tox(m: float, lang: str, posts: int, toxic: int, mean: float, p95: float) -> dict[str, Any]:
    return toxicity_row(minute(m), lang, posts, toxic, mean, p95)


def span(start: int, **row: Any) -> dict[str, Any]:
    return {"window_start": minute(start), "window_end": minute(start + 15), **row}


def engagement(rkey: str, posted: float, velocity: float) -> dict[str, Any]:
    return {
        "post_uri": f"at://did:plc:author/{POST}/{rkey}",
        "did": "did:plc:author",
        "posted_at": minute(posted),
        "likes": 4,
        "reposts": 2,
        "replies": 1,
        "last_engagement_at": minute(posted + 3),
        "viral_velocity": velocity,
    }


def activity(hour: int, did: str, score: float) -> dict[str, Any]:
    return {
        "window_start": T0 + timedelta(hours=hour),
        "did": did,
        "posts": 30,
        "replies": 5,
        "likes": 40,
        "reposts": 0,
        "follows": 25,
        "distinct_targets": 12,
        "mean_toxicity": 0.25,
        "first_post_at": None,
        "last_post_at": None,
        "mean_interval_s": 42.5,
        "bot_score": score,
    }


@dataclass(frozen=True)
class Hostile:
    """Payloads placed in the data: an entity, a hashtag, a post's text and an author's DID."""

    entity: str = HOSTILE_ENTITY
    hashtag: str = "rustlang"
    text: str = HOSTILE_TEXT
    bot_did: str = "did:plc:bot"


def fill_warehouse(warehouse: Warehouse, hostile: Hostile = Hostile()) -> None:
    """Minutes 0..4 of a replayed capture, in two commits per table where it matters."""
    warehouse.create()
    warehouse.write(
        "volume_per_minute",
        [volume(-180, "en", 1000)]  # three hours before the newest minute: out of the window
        + [volume(m, "en", 5 + m) for m in range(4)]
        + [volume(4, "en", 2)]  # corrected by the next commit
        + [volume(m, "ja", 1) for m in range(5)]
        + [volume(2, "-", 700, collection="app.bsky.feed.like")],
    )
    warehouse.write("volume_per_minute", [volume(4, "en", 9)])
    warehouse.write(
        "toxicity_per_minute",
        [
            tox(-180, "en", 1000, 900, 0.9, 1.0),
            tox(1, "en", 10, 2, 0.23, 0.65),
            tox(3, "en", 20, 1, 0.5, 0.9),  # corrected by the next commit
            tox(3, "ja", 4, 1, 0.3, 0.9),
        ],
    )
    warehouse.write(
        "toxicity_per_minute", [tox(3, "en", 20, 3, 0.1, 0.55), tox(4, "pt", 6, 0, 0.05, 0.1)]
    )
    entities = []
    for start in range(-10, 5):  # every 15-minute window that holds one of minutes 0..4
        if start == -10:  # the window ending a minute after the newest: the one shown
            entities += [
                span(start, entity="lisbon", label="LOC", posts=12, authors=7),
                span(start, entity="bluesky", label="ORG", posts=12, authors=3),
                span(start, entity=hostile.entity, label="ORG", posts=9, authors=9),
                span(start, entity="ünïcödé 🎉 \u202ertl", label="MISC", posts=2, authors=1),
            ]
        else:
            entities.append(span(start, entity="decoy", label="MISC", posts=50, authors=50))
    warehouse.write("trending_entities", entities)
    warehouse.write(
        "trending_hashtags",
        [
            span(-10, hashtag=hostile.hashtag, posts=5, authors=4),
            span(-10, hashtag="bsky", posts=3, authors=3),
            span(4, hashtag="partial", posts=99, authors=1),
        ],
    )
    warehouse.write(
        "anomalies",
        [
            {
                "metric": "toxicity",
                "window_start": minute(2),
                "value": 0.6,
                "trailing_minutes": 12,
                "trailing_mean": 0.1,
                "trailing_stddev": 0.1,
                "z_score": 5.0,
            },
            {
                "metric": "volume",
                "window_start": minute(3),
                "value": 500.0,
                "trailing_minutes": 12,
                "trailing_mean": 100.0,
                "trailing_stddev": 20.0,
                "z_score": 20.0,
            },
        ],
    )
    warehouse.write(
        "post_engagement",
        [engagement("old", -180, 100.0), engagement("a", 0, 3.5), engagement("b", 1, 8.25)],
    )
    warehouse.write(
        "enriched_posts",
        [
            {
                "event_id": f"did:plc:author/{POST}/a@3lrev",
                "did": "did:plc:author",
                "time_us": 1,
                "event_time": minute(0),
                "text": hostile.text,
                "langs": ["en"],
                "dt": "2025-06-01",
            }
        ],
    )
    warehouse.write(
        "author_activity",
        [
            activity(-4, "did:plc:ancient", 0.99),
            activity(-1, hostile.bot_did, 0.9),
            activity(0, hostile.bot_did, 0.85),
            activity(0, "did:plc:human", 0.12),
        ],
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def wait_json(url: str, accept: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = get_json(url)
        if accept(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s}s; last: {last!r}")


def wait_dom(url: str, profiles: Path, accept: Callable[[str], bool], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    dom = ""
    while time.monotonic() < deadline:
        dom = dump_dom(url, profiles)
        if accept(dom):
            return dom
    raise AssertionError(f"the page never showed the data within {timeout_s}s:\n{dom[-3000:]}")


def start_dashboard(tmp_path: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    process = ManagedProcess.streampulse(
        ["dashboard"],
        {
            "STREAMPULSE_DASHBOARD__PORT": "0",
            "STREAMPULSE_DASHBOARD__REFRESH_S": "1",
            "STREAMPULSE_LOCAL__STATE_DIR": str(tmp_path / "state"),
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        tmp_path / "dashboard.log",
    )
    url = process.wait_for_output(r"dashboard at (http://\S+/)", timeout_s=120).group(1)
    return process, url


def stop_cleanly(process: ManagedProcess) -> None:
    process.signal(signal.SIGTERM)
    assert process.wait(timeout_s=30) == 0, process.output()[-3000:]
    process.stop()
