"""Helpers of the Flink and storage fault tests (items 5 and 6): a generated event stream whose
aggregates are computed here, independently of the job; producing with every delivery report
counted; the tally of what the tables hold against what was sent; the job's REST API (what the
dashboard's checkpoint panel reads); a size-limited tmpfs and a file that fills it.

The stream: a few authors, posts in three languages (one with none), likes, follows and post
deletes, a dozen events a minute in event-time order, one partition per topic. Every post
create also has its enriched record. ``volume_per_minute`` is computed here for every minute the
watermark has closed: per (minute, collection, lang) the events, creates, deletes and distinct
authors, duplicates (same ``event_id``) counted once.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import subprocess
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from confluent_kafka import KafkaError, Message, Producer

from streampulse.dashboard.checkpoints import flink_checkpoint
from streampulse.kafka import producer_config
from streampulse.lakehouse.reading import Lakehouse
from streampulse.settings import KafkaSettings
from tests.harness.flink import read_tables
from tests.integration.test_flink_aggregates import FOLLOW, LIKE, POST, at, enriched, raw

Event = dict[str, Any]
VolumeKey = tuple[str, str, str]  # window_start, collection, lang
Volume = tuple[int, int, int, int]  # events, creates, deletes, authors

AUTHORS = tuple(f"did:plc:fault-{name}" for name in ("ann", "bob", "cat", "dan", "eve"))
LANGS: tuple[list[str], ...] = (["en"], ["ja"], [])
PER_MINUTE = 12  # events a minute, five seconds apart
WATERMARK_DELAY_US = 5_000_000  # the job's default watermark bound
QUERIES = [
    "SELECT event_id FROM enriched_posts",
    "SELECT window_start, collection, lang, events, creates, deletes, authors "
    "FROM volume_per_minute",
]


def stream(first: int, minutes: range, text_bytes: int = 0) -> list[Event]:
    """Normalized events numbered from ``first``, ``PER_MINUTE`` in each of ``minutes``; posts
    with ``text_bytes`` of incompressible text when given (records too big for a full disk)."""
    events: list[Event] = []
    n = first
    for minute in minutes:
        for slot in range(PER_MINUTE):
            did, t = AUTHORS[(n * 3 + minute) % len(AUTHORS)], at(minute, slot * 5)
            match n % 5:
                case 0 | 1:
                    text = {"text": secrets.token_hex(text_bytes // 2)} if text_bytes else {}
                    events.append(raw(n, did, t, langs=LANGS[n % 3], **text))
                case 2:
                    events.append(raw(n, did, t, LIKE, subject_uri=f"at://x/{POST}/{n - 1}"))
                case 3:
                    events.append(raw(n, did, t, FOLLOW, subject_did=AUTHORS[n % 2]))
                case _:
                    events.append(raw(n, did, t, operation="delete"))
            n += 1
    return events


def closer(minute: int) -> Event:
    """An event an hour after ``minute``: its watermark closes every minute before it."""
    return raw(999_999, "did:plc:closer", at(minute + 60, 10), langs=["en"])


def is_post(event: Event) -> bool:
    return bool(event["collection"] == POST and event["operation"] == "create")


def minute_of(time_us: int) -> str:
    start = datetime.fromtimestamp(time_us // 60_000_000 * 60, UTC)
    return start.replace(tzinfo=None).isoformat()


def expected_volume(events: list[Event]) -> dict[VolumeKey, Volume]:
    """``volume_per_minute`` of the minutes the stream's watermark has closed, by hand."""
    unique = list({e["event_id"]: e for e in reversed(events)}.values())
    watermark = max(e["time_us"] for e in events) - WATERMARK_DELAY_US
    groups: dict[VolumeKey, list[Event]] = defaultdict(list)
    for event in unique:
        if event["time_us"] // 60_000_000 * 60_000_000 + 60_000_000 > watermark:
            continue  # its minute is still open
        lang = (event["langs"] or ["und"])[0] if event["collection"] == POST else "-"
        groups[(minute_of(event["time_us"]), event["collection"], lang)].append(event)
    return {
        key: (
            len(group),
            sum(1 for e in group if e["operation"] == "create"),
            sum(1 for e in group if e["operation"] == "delete"),
            len({e["did"] for e in group}),
        )
        for key, group in groups.items()
    }


@dataclass(frozen=True)
class Tally:
    """What the tables hold against what was sent (distinct events of closed minutes)."""

    sent: int
    delivered: int
    duplicated: int
    lost: int
    exact: bool


def tally(events: list[Event], tables: list[list[dict[str, Any]]]) -> Tally:
    posts, volume = tables
    want = expected_volume(events)
    got: dict[VolumeKey, Volume] = {
        (r["window_start"], r["collection"], r["lang"]):
        (r["events"], r["creates"], r["deletes"], r["authors"])
        for r in volume
    }  # fmt: skip
    keys = set(want) | set(got)
    over = sum(max(got.get(k, (0,))[0] - want.get(k, (0,))[0], 0) for k in keys)
    under = sum(max(want.get(k, (0,))[0] - got.get(k, (0,))[0], 0) for k in keys)
    wanted_posts = {e["event_id"] for e in events if is_post(e)}
    rows = Counter(row["event_id"] for row in posts)
    duplicated = over + sum(n - 1 for n in rows.values())
    lost = under + len(wanted_posts - set(rows))
    sent = sum(v[0] for v in want.values())
    exact = got == want and rows == Counter(wanted_posts)
    return Tally(sent, sent - under, duplicated, lost, exact)


def reader(lakehouse: Lakehouse) -> Callable[[], list[list[dict[str, Any]]]]:
    """The two tables through pypaimon and DuckDB; empty before the job has created them."""

    def read() -> list[list[dict[str, Any]]]:
        if not {"enriched_posts", "volume_per_minute"} <= set(lakehouse.tables()):
            return [[], []]
        return read_tables(lakehouse, QUERIES)

    return read


@dataclass
class Delivery:
    """Delivery reports of one ``produce`` call: acknowledged and failed events by id."""

    acked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def produce(
    kafka: KafkaSettings, events: list[Event], *, timeout_s: float = 60.0, log_level: int = 6
) -> Delivery:
    """Each event to the raw topic (a post's enriched record too), waiting for every report.

    A record the broker does not acknowledge within ``timeout_s`` is reported failed, never
    dropped unseen: the caller sends it again, as the ingest worker resumes from the tail.
    """
    config = producer_config(kafka, client_id="flink-faults")
    producer = Producer({**config, "delivery.timeout.ms": int(timeout_s * 1000),
                         "log_level": log_level})  # fmt: skip
    delivery = Delivery()

    def report(event_id: str) -> Callable[[KafkaError | None, Message], None]:
        def done(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                delivery.acked.append(event_id)
            else:
                delivery.failed.append(event_id)
                delivery.errors[error.name()] += 1

        return done

    for event in events:
        key = event["did"].encode()
        producer.produce(kafka.raw_topic, orjson.dumps(event), key, on_delivery=report(
            event["event_id"]))  # fmt: skip
        if is_post(event):
            producer.produce(kafka.enriched_topic, enriched(event, 0.1, []), key)
    remaining = producer.flush(timeout_s + 30)
    assert remaining == 0, f"{remaining} records without a delivery report"
    return delivery


# -- the job's REST API ------------------------------------------------------------------------


def rest(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def checkpoints(port: int, job_id: str) -> dict[str, int]:
    """``counts`` of ``/jobs/<id>/checkpoints``: completed, failed, restored, ..."""
    counts: dict[str, int] = rest(port, f"/jobs/{job_id}/checkpoints")["counts"]
    return counts


def failed_checkpoints(port: int, job_id: str) -> Counter[str]:
    """Why the checkpoints in the REST API's history failed: the first line of each message."""
    history = rest(port, f"/jobs/{job_id}/checkpoints")["history"]
    return Counter(
        str(entry.get("failure_message") or "?").splitlines()[0][:160]
        for entry in history
        if entry.get("status") == "FAILED"
    )


def failures(port: int, job_id: str) -> list[str]:
    """The job's exception history: each failure's exception name and stack trace."""
    history = rest(port, f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
    return [f"{e.get('exceptionName')}: {e.get('stacktrace', '')}" for e in history]


def dashboard_panel(port: int) -> dict[str, Any]:
    """The dashboard's checkpoint panel, computed by its own code from this REST API."""

    async def panel() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return await flink_checkpoint(session, f"http://127.0.0.1:{port}", 10.0, time.time())

    return asyncio.run(panel())


# -- a disk that fills -------------------------------------------------------------------------


@contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``path`` (the tests run as root), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(mount: Path) -> Path:
    """A file that takes every free byte of ``mount`` (MiB writes, then pages); returns it."""
    filler = mount / "filler"
    with filler.open("ab", buffering=0) as handle:
        for chunk in (1 << 20, 4096):
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def wait_for(probe: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Call ``probe`` until it answers something true; fail with the last answer."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout_s}s; last: {last!r}")
