"""Faults injected for tests: each kind is bad input or bad behaviour a consumer must survive.

Malformed frames (``malformed_every``) cycle through ``KINDS`` in a fixed order, counted per
connection. Each frame is extra (it never replaces an event) and is sent the way events of the
connection are: a text frame, or a zstd binary frame when compressing (a text frame whose bytes
are not UTF-8 is itself part of the ``invalid_utf8`` fault).

Positioned faults (``bomb_every``, ``oversized_every``, ``deep_every``) are placed by stream
position instead, so a reconnect meets them again at the same place: a zstd decompression bomb, a
frame larger than a client's websocket limit, and a record nested deeper than JSON libraries
accept. ``silent_after`` (in ``sessions``) is a fault of the connection: it stays open and sends
nothing.
"""

from __future__ import annotations

import base64
import itertools
import random
import struct
from dataclasses import dataclass

import orjson

from streampulse.replay.frames import Compressor, ws_frame
from streampulse.replay.identifiers import encode_tid, iso_time
from streampulse.settings import ReplaySettings

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


# -- faults of the frame and the connection, injected by stream position ---------------------
#
# Each is placed after the stream event at a fixed position (``(position + 1) % every == 0``;
# for a client whose filters let that event through), with bytes that depend on that position
# only, so a client that reconnects with a rewound cursor meets the same fault at the same place,
# byte for byte, as it would on live Jetstream. ``maxMessageSizeBytes`` applies to them as to
# events.

BOMB = "zstd_bomb"
OVERSIZED = "oversized_frame"
DEEP = "deep_nesting"
POSITIONED_KINDS = (BOMB, OVERSIZED, DEEP)

ZSTD_MAGIC = 0xFD2FB528
ZSTD_BLOCK_BYTES = 1 << 17  # zstd's largest block: one RLE block expands to this many bytes
# orjson's limits: it encodes at most 254 levels of nesting and decodes at most 1024. The first
# depth passes a decoder but not a re-encoder (a record passed through as JSON text); the second
# fails the decoder itself. Deep-nesting faults alternate between them.
NESTING_DEPTHS = (512, 2048)
DEEP_COLLECTION = "app.streampulse.fault.nested"


def zstd_bomb(content_size: int) -> bytes:
    """A valid zstd frame whose header declares ``content_size`` bytes, and holds them.

    The content is spaces in run-length-encoded blocks: 4 bytes on the wire for each 128 KiB, so
    4 GiB fit in a 128 KiB frame. A decoder that trusts the header allocates all of it at once
    (python-zstandard's ``decompress`` does, whatever its ``max_output_size``).
    """
    if content_size <= 0:
        raise ValueError("a bomb declares a positive content size")
    descriptor = (3 << 6) | (1 << 5)  # 8-byte content size field, single segment, no dict id
    parts = [struct.pack("<IBQ", ZSTD_MAGIC, descriptor, content_size)]
    left = content_size
    while left:
        size = min(ZSTD_BLOCK_BYTES, left)
        left -= size
        header = (0 if left else 1) | (1 << 1) | (size << 3)  # last-block flag, type 1 (RLE)
        parts.append(struct.pack("<I", header)[:3] + b" ")
    return b"".join(parts)


def _fault_rkey(time_us: int, position: int) -> str:
    return encode_tid(time_us, position % 1024)


def oversized_payload(time_us: int, position: int, size: int) -> bytes:
    """A post event of about ``size`` bytes of JSON whose text is random base64.

    Random base64 does not compress much (zstd keeps about three quarters of it), so the frame
    stays large on compressed connections too. The same position gives the same bytes.
    """
    rng = random.Random(position)
    text = base64.b64encode(rng.randbytes(size * 3 // 4)).decode("ascii")
    rkey = _fault_rkey(time_us, position)
    commit = {
        "rev": rkey,
        "operation": "create",
        "collection": "app.bsky.feed.post",
        "rkey": rkey,
        "record": {"$type": "app.bsky.feed.post", "createdAt": iso_time(time_us), "text": text},
        "cid": "bafyreioversizedframefault" + "a" * 33,
    }
    return orjson.dumps({"did": FAULT_DID, "time_us": time_us, "kind": "commit", "commit": commit})


def deep_payload(time_us: int, position: int, depth: int) -> bytes:
    """A commit of an unknown collection whose record nests ``depth`` objects deep.

    Built as text: orjson itself refuses to encode it.
    """
    rkey = _fault_rkey(time_us, position)
    head = (
        f'{{"did":"{FAULT_DID}","time_us":{time_us},"kind":"commit","commit":{{"rev":"{rkey}",'
        f'"operation":"create","collection":"{DEEP_COLLECTION}","rkey":"{rkey}",'
        f'"cid":"bafyreideepnestingfault{"a" * 36}","record":{{"$type":"{DEEP_COLLECTION}",'
        '"value":'
    )
    nested = '{"v":' * depth + "0" + "}" * depth
    return (head + nested + "}}}").encode()


@dataclass(frozen=True)
class FaultFrame:
    """One injected frame: its kind, its bytes on the wire and the size filters compare."""

    kind: str
    frame: bytes
    size: int  # bytes of the JSON it carries, what ``maxMessageSizeBytes`` limits


class PositionedFaults:
    """Which positioned faults follow a stream position, and their frames.

    ``every`` maps a kind to its period in stream positions (0: off). Frames are built on demand;
    the costly oversized ones are kept for the last few positions.
    """

    _KEEP_OVERSIZED = 4

    def __init__(self, every: dict[str, int], *, bomb_bytes: int, oversized_bytes: int) -> None:
        self._every = {kind: n for kind, n in every.items() if n > 0}
        self._bomb_bytes = bomb_bytes
        self._oversized_bytes = oversized_bytes
        self._oversized: dict[tuple[int, bool], FaultFrame] = {}

    @classmethod
    def from_settings(cls, settings: ReplaySettings) -> PositionedFaults:
        every = {
            BOMB: settings.bomb_every,
            OVERSIZED: settings.oversized_every,
            DEEP: settings.deep_every,
        }
        return cls(every, bomb_bytes=settings.bomb_bytes, oversized_bytes=settings.oversized_bytes)

    def __bool__(self) -> bool:
        return bool(self._every)

    def after(self, position: int) -> list[str]:
        """The kinds injected after the event at ``position``, in a fixed order."""
        return [kind for kind, n in self._every.items() if (position + 1) % n == 0]

    def frame(
        self, kind: str, position: int, time_us: int, compressor: Compressor | None
    ) -> FaultFrame | None:
        """The frame of ``kind`` after ``position``, timed like the event there; None where it
        does not apply (a zstd bomb on a connection without compression)."""
        if kind == BOMB:
            if compressor is None:
                return None
            size = self._bomb_bytes + position  # one size per position: each bomb is its own
            return FaultFrame(kind, ws_frame(zstd_bomb(size), text=False), size)
        if kind == OVERSIZED:
            key = (position, compressor is not None)
            built = self._oversized.get(key)
            if built is None:
                payload = oversized_payload(time_us, position, self._oversized_bytes)
                built = _encoded(kind, payload, compressor)
                if len(self._oversized) >= self._KEEP_OVERSIZED:
                    self._oversized.pop(next(iter(self._oversized)))
                self._oversized[key] = built
            return built
        if kind == DEEP:
            occurrence = (position + 1) // self._every[DEEP]
            depth = NESTING_DEPTHS[occurrence % len(NESTING_DEPTHS)]
            return _encoded(kind, deep_payload(time_us, position, depth), compressor)
        raise ValueError(f"unknown positioned fault {kind!r}")


def _encoded(kind: str, payload: bytes, compressor: Compressor | None) -> FaultFrame:
    """A payload as the connection sends events: text, or a zstd frame in a binary message."""
    if compressor is None:
        return FaultFrame(kind, ws_frame(payload, text=True), len(payload))
    return FaultFrame(kind, ws_frame(compressor.compress(payload), text=False), len(payload))
