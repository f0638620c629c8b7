"""AT Protocol identifiers the generator and the loop shift need: TIDs, CIDs, DIDs, times.

A TID is 13 characters of base32-sortable text encoding ``(unix_us << 10) | clock_id``; record
keys and repo revisions are TIDs, so shifting a TID by a time offset keeps it sortable and
plausible.
"""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime

TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_INDEX = {char: value for value, char in enumerate(TID_ALPHABET)}
TID_LENGTH = 13
_TID_PAIRS = [a + b for a in TID_ALPHABET for b in TID_ALPHABET]  # 10 bits -> 2 characters
_BYTE_TO_BASE32 = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[i % 32] for i in range(256))


def tid_text(value: int) -> str:
    """The 13 characters of a TID's 64-bit integer value (one char, then six 10-bit pairs)."""
    pairs = _TID_PAIRS
    return (
        TID_ALPHABET[(value >> 60) & 0x1F]
        + pairs[(value >> 50) & 0x3FF]
        + pairs[(value >> 40) & 0x3FF]
        + pairs[(value >> 30) & 0x3FF]
        + pairs[(value >> 20) & 0x3FF]
        + pairs[(value >> 10) & 0x3FF]
        + pairs[value & 0x3FF]
    )


def tid_value(tid: str) -> int:
    """The 64-bit integer value of a TID."""
    value = 0
    for char in tid:
        value = (value << 5) | _TID_INDEX[char]
    return value


def encode_tid(unix_us: int, clock_id: int) -> str:
    """The TID of a microsecond timestamp and a 10-bit clock id."""
    return tid_text((unix_us << 10) | (clock_id & 0x3FF))


def is_tid(text: str) -> bool:
    """Whether ``text`` has the shape of a TID (so it can be shifted)."""
    return (
        len(text) == TID_LENGTH
        and text[0] in "234567abcdefghij"
        and all(c in _TID_INDEX for c in text)
    )


def decode_tid(tid: str) -> tuple[int, int]:
    """Split a TID into its microsecond timestamp and clock id."""
    value = tid_value(tid)
    return value >> 10, value & 0x3FF


def shift_tid(tid: str, offset_us: int) -> str:
    """The TID ``offset_us`` microseconds later; anything that is not a TID is returned as is."""
    if not is_tid(tid):
        return tid
    unix_us, clock_id = decode_tid(tid)
    return encode_tid(unix_us + offset_us, clock_id)


def _base32(rng: random.Random, chars: int) -> str:
    """``chars`` random characters of lowercase RFC 4648 base32 (a-z, 2-7)."""
    return rng.randbytes(chars).translate(_BYTE_TO_BASE32).decode("ascii")


def random_cid(rng: random.Random) -> str:
    """A CIDv1 (dag-cbor, sha-256) shaped string: ``bafyrei`` + 52 base32 characters."""
    return "bafyrei" + _base32(rng, 52)


def random_blob_cid(rng: random.Random) -> str:
    """A raw-codec blob CID shaped string, as images and avatars reference."""
    return "bafkrei" + _base32(rng, 52)


def random_did(rng: random.Random) -> str:
    """A did:plc with the 24-character base32 identifier of real accounts."""
    return "did:plc:" + _base32(rng, 24)


def iso_time(unix_us: int) -> str:
    """RFC 3339 UTC time with milliseconds, as records' ``createdAt`` carry it."""
    seconds, micros = divmod(unix_us, 1_000_000)
    return f"{_iso_second(seconds)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
