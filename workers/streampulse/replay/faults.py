"""Malformed frames injected for tests: each kind is bad input a consumer must survive.

Kinds cycle in a fixed order. Each frame is extra (it never replaces an event) and is sent the
way events of the connection are: a text frame, or a zstd binary frame when compressing (a text
frame whose bytes are not UTF-8 is itself part of the ``invalid_utf8`` fault).
"""

from __future__ import annotations

import itertools

import orjson

from streampulse.replay.identifiers import encode_tid, iso_time

KINDS = (
    "invalid_json",
    "invalid_utf8",
    "missing_fields",
    "wrong_types",
    "unknown_kind",
    "huge_text",
)
HUGE_TEXT_CHARS = 5000  # far above the 3000 characters consumers accept
FAULT_DID = "did:plc:replayfaultinjectionx"
_serials = itertools.count()


def malformed_payload(kind: str, time_us: int) -> bytes:
    """The bytes of one malformed message of ``kind``, timed like the event before it."""
    serial = next(_serials)  # unique ids across connections of this process
    tid = encode_tid(time_us, serial % 1024)
    if kind == "invalid_json":
        return b'{"did":"' + FAULT_DID.encode() + b'","time_us":' + str(time_us).encode() + b',"ki'
    if kind == "invalid_utf8":
        return (
            b'{"did":"' + FAULT_DID.encode() + b'","time_us":' + str(time_us).encode()
            + b',"kind":"commit","commit":{"text":"broken \xff\xfe\xc3\x28 bytes"}}'
        )  # fmt: skip
    if kind == "missing_fields":
        return orjson.dumps({"kind": "commit", "commit": {"operation": "create", "rkey": tid}})
    if kind == "wrong_types":
        return orjson.dumps(
            {"did": 42, "time_us": str(time_us), "kind": "commit", "commit": ["create"]}
        )
    if kind == "unknown_kind":
        return orjson.dumps(
            {"did": FAULT_DID, "time_us": time_us, "kind": "mystery", "mystery": {"seq": serial}}
        )
    if kind == "huge_text":
        text = ("Hostile \u202eoverride text with emoji 👩\u200d💻 and more words. " * 100)[
            :HUGE_TEXT_CHARS
        ]
        record = {"$type": "app.bsky.feed.post", "createdAt": iso_time(time_us), "text": text}
        commit = {
            "rev": tid,
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": encode_tid(time_us - 1_000 - serial, serial % 1024),
            "record": record,
            "cid": "bafyreihugetextfault" + "a" * 39,
        }
        return orjson.dumps(
            {"did": FAULT_DID, "time_us": time_us, "kind": "commit", "commit": commit}
        )
    raise ValueError(f"unknown malformed kind {kind!r}")
