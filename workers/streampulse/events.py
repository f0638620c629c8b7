"""Wire contracts shared by every stage: the normalized event and the dead letter.

Values on every topic are UTF-8 JSON objects with a ``schema_version``. The Flink job reads the
same field names (see ``flink/``); a contract test keeps both sides in step.
"""

from __future__ import annotations

import base64
import time
from typing import Literal, TypedDict

import orjson

SCHEMA_VERSION = 1

EventKind = Literal["commit", "identity", "account"]
Operation = Literal["create", "update", "delete"]

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
BLOCK = "app.bsky.graph.block"


class NormalizedEvent(TypedDict):
    """One flat record per Jetstream event, as written to ``bluesky.stream.raw``.

    Every key is always present (``None`` or ``[]`` when it does not apply), so consumers
    and the Flink DDL see one fixed shape.
    """

    schema_version: int
    event_id: str  # commits: did/collection/rkey@rev; identity/account: did/kind@seq
    did: str
    time_us: int  # Jetstream's receive time, unix microseconds: the event time
    kind: EventKind
    operation: Operation | None
    collection: str | None
    rkey: str | None
    rev: str | None
    cid: str | None
    ingested_at_us: int
    # posts
    text: str | None
    langs: list[str]
    created_at: str | None
    reply_root: str | None  # at:// URI of the thread root
    reply_parent: str | None  # at:// URI of the post replied to
    embed_type: str | None  # images, video, external, record, recordWithMedia, ...
    hashtags: list[str]
    mentions: list[str]  # DIDs
    links: list[str]
    # likes and reposts
    subject_uri: str | None
    # follows and blocks
    subject_did: str | None
    # identity and account events
    handle: str | None
    active: bool | None
    status: str | None
    # any other collection: its record, as JSON text
    record_json: str | None


class DeadLetter(TypedDict):
    """A record a stage could not process, as written to ``bluesky.stream.dlq``."""

    schema_version: int
    stage: str  # ingest, enrich, ...
    reason: str  # a short machine-readable cause, also a metric label
    error: str  # the human-readable message
    original_b64: str  # the original bytes, exactly as received
    original_key: str | None
    headers: dict[str, str]
    source: str  # where the bytes came from: a URL or a topic/partition/offset
    failed_at_us: int


def now_us() -> int:
    """Wall-clock time in unix microseconds."""
    return time.time_ns() // 1000


def encode_dead_letter(
    *,
    stage: str,
    reason: str,
    error: str,
    original: bytes,
    source: str,
    original_key: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """Serialize a dead letter; the original bytes survive exactly, base64-encoded."""
    letter: DeadLetter = {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "reason": reason,
        "error": error[:2000],
        "original_b64": base64.b64encode(original).decode("ascii"),
        "original_key": (
            original_key.decode("utf-8", "backslashreplace") if original_key is not None else None
        ),
        "headers": headers or {},
        "source": source,
        "failed_at_us": now_us(),
    }
    return orjson.dumps(letter)


def decode_dead_letter(value: bytes) -> tuple[DeadLetter, bytes]:
    """Parse a dead letter and return it with its original bytes."""
    letter: DeadLetter = orjson.loads(value)
    return letter, base64.b64decode(letter["original_b64"])
