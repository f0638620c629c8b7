"""Jetstream v1 events -> the flat ``NormalizedEvent`` of the raw topic.

``normalize`` is the hot path of ingestion (it runs for every event of the firehose), so it
works on plain dicts and checks only what the record contract needs. Anything unusable raises
``MalformedEvent`` with a short reason, which becomes a dead letter and a metric label.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from streampulse.errors import MalformedEvent
from streampulse.events import (
    BLOCK,
    FOLLOW,
    LIKE,
    POST,
    REPOST,
    SCHEMA_VERSION,
    NormalizedEvent,
    Operation,
)

_OPERATIONS = frozenset(("create", "update", "delete"))
_TAG = "app.bsky.richtext.facet#tag"
_MENTION = "app.bsky.richtext.facet#mention"
_LINK = "app.bsky.richtext.facet#link"
_EMBED_PREFIX = "app.bsky.embed."
_MAX_FACET_ITEMS = 100
# orjson decodes at most 1024 levels of nesting and encodes at most 254; either limit makes a
# frame a ``too_deep`` dead letter (a record passed through as JSON text is re-encoded).
_DEPTH_ERROR = "depth limit exceeded"


def _str(container: dict[str, Any], key: str, reason: str) -> str:
    value = container.get(key)
    if type(value) is not str or not value:
        got = type(value).__name__
        raise MalformedEvent(reason, f"{key} must be a non-empty string, got {got}")
    return value


def _opt_str(value: object) -> str | None:
    return value if type(value) is str else None


def _uri(ref: object) -> str | None:
    """The ``uri`` of a strong ref (``{"uri": ..., "cid": ...}``), if well formed."""
    if type(ref) is dict:
        return _opt_str(ref.get("uri"))
    return None


def _base(did: str, time_us: int, kind: Any, ingested_at_us: int) -> NormalizedEvent:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": "",
        "did": did,
        "time_us": time_us,
        "kind": kind,
        "operation": None,
        "collection": None,
        "rkey": None,
        "rev": None,
        "cid": None,
        "ingested_at_us": ingested_at_us,
        "text": None,
        "langs": [],
        "created_at": None,
        "reply_root": None,
        "reply_parent": None,
        "embed_type": None,
        "hashtags": [],
        "mentions": [],
        "links": [],
        "subject_uri": None,
        "subject_did": None,
        "handle": None,
        "active": None,
        "status": None,
        "record_json": None,
    }


def _add_unique(values: list[str], value: object) -> None:
    if type(value) is str and value and value not in values:
        values.append(value)


def _facets(event: NormalizedEvent, record: dict[str, Any]) -> None:
    """Hashtags, mentions and links from rich-text facets (and the post's own ``tags``)."""
    targets: dict[object, tuple[str, list[str]]] = {
        _TAG: ("tag", event["hashtags"]),
        _MENTION: ("did", event["mentions"]),
        _LINK: ("uri", event["links"]),
    }
    facets = record.get("facets")
    for facet in facets[:_MAX_FACET_ITEMS] if type(facets) is list else ():
        features = facet.get("features") if type(facet) is dict else None
        for feature in features[:_MAX_FACET_ITEMS] if type(features) is list else ():
            kind = feature.get("$type") if type(feature) is dict else None
            target = targets.get(kind) if type(kind) is str else None
            if target is not None:
                _add_unique(target[1], feature.get(target[0]))
    tags = record.get("tags")
    for tag in tags[:_MAX_FACET_ITEMS] if type(tags) is list else ():
        _add_unique(event["hashtags"], tag)


def _post(event: NormalizedEvent, record: dict[str, Any], max_text_chars: int) -> None:
    text = record.get("text", "")
    if type(text) is not str:
        raise MalformedEvent("wrong_type", f"post text must be a string, got {type(text).__name__}")
    if len(text) > max_text_chars:
        raise MalformedEvent("oversized_text", f"{len(text)} characters > {max_text_chars}")
    event["text"] = text
    langs = record.get("langs")
    if type(langs) is list:
        event["langs"] = [lang for lang in langs if type(lang) is str][:8]
    event["created_at"] = _opt_str(record.get("createdAt"))
    reply = record.get("reply")
    if type(reply) is dict:
        event["reply_root"] = _uri(reply.get("root"))
        event["reply_parent"] = _uri(reply.get("parent"))
    embed = record.get("embed")
    if type(embed) is dict:
        embed_type = embed.get("$type")
        if type(embed_type) is str:
            event["embed_type"] = embed_type.removeprefix(_EMBED_PREFIX)
    _facets(event, record)


def _commit(event: NormalizedEvent, commit: dict[str, Any], max_text_chars: int) -> NormalizedEvent:
    operation = commit.get("operation")
    if type(operation) is not str or operation not in _OPERATIONS:
        raise MalformedEvent("bad_operation", f"commit operation {operation!r}")
    collection, rkey, rev = commit.get("collection"), commit.get("rkey"), commit.get("rev")
    if not (type(collection) is str and type(rkey) is str and type(rev) is str):
        for key in ("collection", "rkey", "rev"):
            _str(commit, key, "missing_field")  # raises, naming the first bad field
    if not (collection and rkey and rev):
        raise MalformedEvent("missing_field", "collection, rkey and rev must not be empty")
    event["operation"] = cast(Operation, operation)  # checked against _OPERATIONS above
    event["collection"] = collection
    event["rkey"] = rkey
    event["rev"] = rev
    event["event_id"] = f"{event['did']}/{collection}/{rkey}@{rev}"
    if operation == "delete":
        return event
    record = commit.get("record")
    if type(record) is not dict:
        raise MalformedEvent("missing_field", f"{operation} commit without a record object")
    event["cid"] = _opt_str(commit.get("cid"))
    if collection == POST:
        _post(event, record, max_text_chars)
    elif collection in (LIKE, REPOST):
        event["subject_uri"] = _uri(record.get("subject"))
        event["created_at"] = _opt_str(record.get("createdAt"))
    elif collection in (FOLLOW, BLOCK):
        event["subject_did"] = _opt_str(record.get("subject"))
        event["created_at"] = _opt_str(record.get("createdAt"))
    else:
        try:
            event["record_json"] = orjson.dumps(record).decode()
        except orjson.JSONEncodeError as exc:  # decoded JSON re-encodes, unless nested too deep
            raise MalformedEvent("too_deep", f"record cannot be re-encoded: {exc}") from exc
    return event


def _identity(event: NormalizedEvent, body: dict[str, Any]) -> NormalizedEvent:
    event["handle"] = _opt_str(body.get("handle"))
    event["event_id"] = f"{event['did']}/identity@{body.get('seq', event['time_us'])}"
    return event


def _account(event: NormalizedEvent, body: dict[str, Any]) -> NormalizedEvent:
    active = body.get("active")
    event["active"] = active if type(active) is bool else None
    event["status"] = _opt_str(body.get("status"))
    event["event_id"] = f"{event['did']}/account@{body.get('seq', event['time_us'])}"
    return event


def normalize(frame: bytes, ingested_at_us: int, max_text_chars: int = 3000) -> NormalizedEvent:
    """Decode one Jetstream frame and flatten it; raise ``MalformedEvent`` when unusable."""
    try:
        raw = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        reason = "too_deep" if _DEPTH_ERROR in str(exc) else "invalid_json"
        raise MalformedEvent(reason, str(exc)) from exc
    if type(raw) is not dict:
        raise MalformedEvent("not_an_object", f"top level is {type(raw).__name__}")
    did = _str(raw, "did", "missing_field")
    if not did.startswith("did:"):
        raise MalformedEvent("bad_did", f"{did[:80]!r} is not a DID")
    time_us = raw.get("time_us")
    if type(time_us) is not int or time_us <= 0:
        raise MalformedEvent("wrong_type", f"time_us must be a positive integer, got {time_us!r}")
    kind = raw.get("kind")
    event = _base(did, time_us, kind, ingested_at_us)
    body = raw.get(kind) if type(kind) is str else None
    if kind == "commit":
        if type(body) is not dict:
            raise MalformedEvent("missing_field", "commit event without a commit object")
        return _commit(event, body, max_text_chars)
    if kind == "identity":
        return _identity(event, body if type(body) is dict else {})
    if kind == "account":
        return _account(event, body if type(body) is dict else {})
    raise MalformedEvent("unknown_kind", f"kind {str(kind)[:40]!r}")
