"""Jetstream v1 ``/subscribe`` protocol: query parameters, filters, client messages.

Differences from live Jetstream, on purpose: an absent ``cursor`` starts at the beginning of the
stream (live Jetstream tails live events), and a cursor past the end waits for nothing instead
of tailing. Identity and account events pass any ``wantedCollections`` filter, as on Jetstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from streampulse.replay.streams import StreamEvent

PATH = "/subscribe"
MAX_WANTED_COLLECTIONS = 100
MAX_WANTED_DIDS = 10_000
_NSID = re.compile(
    r"^[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+$"
)
_NSID_PREFIX = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9-]+)*\.\*$")
_TRUE = ("true", "1")


class InvalidRequest(ValueError):
    """A subscribe request or client message the server will not act on."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What a client wants: collections (exact or ``prefix.*``), DIDs, a size ceiling."""

    collections: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()  # each ends with "." ("app.bsky.graph.*" -> "app.bsky.graph.")
    dids: frozenset[str] = frozenset()
    max_message_bytes: int = 0  # 0: no limit
    _verdicts: dict[str | None, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(
        cls,
        wanted_collections: Iterable[str] = (),
        wanted_dids: Iterable[str] = (),
        max_message_bytes: int = 0,
    ) -> Filters:
        """Validated filters, as Jetstream validates them (limits, NSID syntax, DID prefix)."""
        wanted = list(wanted_collections)
        dids = list(wanted_dids)
        if len(wanted) > MAX_WANTED_COLLECTIONS:
            raise InvalidRequest(f"at most {MAX_WANTED_COLLECTIONS} wantedCollections")
        if len(dids) > MAX_WANTED_DIDS:
            raise InvalidRequest(f"at most {MAX_WANTED_DIDS} wantedDids")
        exact = [c for c in wanted if not c.endswith(".*")]
        prefixes = [c for c in wanted if c.endswith(".*")]
        for collection in exact:
            if not _NSID.match(collection):
                raise InvalidRequest(f"invalid collection {collection!r}")
        for prefix in prefixes:
            if not _NSID_PREFIX.match(prefix):
                raise InvalidRequest(f"invalid collection prefix {prefix!r}")
        for did in dids:
            if not did.startswith("did:"):
                raise InvalidRequest(f"invalid DID {did!r}")
        return cls(
            frozenset(exact),
            tuple(p[:-1] for p in prefixes),
            frozenset(dids),
            max(0, max_message_bytes),  # Jetstream treats negative values as zero
        )

    @property
    def everything(self) -> bool:
        """True when no filter is set (the fast path)."""
        return not (self.collections or self.prefixes or self.dids or self.max_message_bytes)

    def wants_collection(self, collection: str | None) -> bool:
        """Commits of a wanted collection, and every identity/account event (None)."""
        verdict = self._verdicts.get(collection)
        if verdict is None:
            verdict = (
                collection is None
                or not (self.collections or self.prefixes)
                or collection in self.collections
                or collection.startswith(self.prefixes)
            )
            self._verdicts[collection] = verdict
        return verdict

    def accepts(self, did: str, collection: str | None, size: int) -> bool:
        """Whether an event with these fields and ``size`` bytes goes to the client."""
        return (
            (not self.dids or did in self.dids)
            and (not self.max_message_bytes or size <= self.max_message_bytes)
            and self.wants_collection(collection)
        )

    def accepts_event(self, event: StreamEvent) -> bool:
        """``accepts`` for a stream event: what a test expects a client to receive."""
        return self.accepts(event.did, event.collection, len(event.raw))

    def describe(self) -> dict[str, Any]:
        """The filters as a log line shows them."""
        return {
            "wantedCollections": sorted(self.collections) + [p + "*" for p in self.prefixes],
            "wantedDids": len(self.dids),
            "maxMessageSizeBytes": self.max_message_bytes,
        }


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A parsed ``/subscribe`` handshake."""

    filters: Filters
    cursor: int | None
    compress: bool
    require_hello: bool


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer, not {value!r}") from exc


def parse_subscribe(target: str, headers: Mapping[str, str]) -> SubscribeRequest:
    """Parse the request target (path and query) and headers of a subscribe handshake."""
    url = urlsplit(target)
    if url.path != PATH:
        raise InvalidRequest(f"no such path {url.path!r}; subscribe at {PATH}")
    query = parse_qs(url.query, keep_blank_values=True)

    def last(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    cursor = last("cursor")
    size = last("maxMessageSizeBytes")
    filters = Filters.create(
        [c for c in query.get("wantedCollections", []) if c],
        [d for d in query.get("wantedDids", []) if d],
        _int(size, "maxMessageSizeBytes") if size else 0,
    )
    compress = (last("compress") or "").lower() in _TRUE
    compress = compress or headers.get("Socket-Encoding", "").lower() == "zstd"
    return SubscribeRequest(
        filters=filters,
        cursor=_int(cursor, "cursor") if cursor else None,
        compress=compress,
        require_hello=(last("requireHello") or "").lower() in _TRUE,
    )


def _strings(payload: Mapping[str, Any], name: str) -> list[str]:
    value = payload.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"{name} must be a list of strings")
    return value


def parse_client_message(message: str | bytes) -> Filters:
    """The new filters of an ``options_update`` message; anything else is InvalidRequest."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"client message is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "options_update":
        raise InvalidRequest("client message is not an options_update")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise InvalidRequest("options_update payload must be an object")
    size = payload.get("maxMessageSizeBytes", 0) or 0
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidRequest("maxMessageSizeBytes must be an integer")
    return Filters.create(
        _strings(payload, "wantedCollections"), _strings(payload, "wantedDids"), size
    )
