"""A Jetstream ``/subscribe`` client that keeps a stream going.

It fails over across the configured endpoints, reconnects with jittered exponential backoff,
asks each new connection to resume from the caller's cursor, and undoes zstd compression with the
shared dictionary. It yields frames as bytes; parsing is the caller's business.

What it does with frames it must not read:

- A zstd frame whose header declares more than ``max_event_bytes`` (a decompression bomb) is
  handed over as a ``MalformedEvent`` without being decompressed. python-zstandard's
  ``decompress`` allocates whatever a frame's header declares, whatever its ``max_output_size``.
- A frame larger than the websocket limit makes the connection fail (close code 1009) before its
  payload is read. It is handed over as a ``MalformedEvent`` with no bytes, and the next
  connection, to the same endpoint, asks the server to leave out events over the limit
  (``maxMessageSizeBytes``), so the rewound cursor does not fetch the same frame forever. As soon
  as that connection delivers an event newer than any seen before the oversized frame, it is past
  it: the client reconnects at once to the same endpoint, at exactly that event's ``time_us`` (no
  rewind) and without the filter, so later oversized frames are seen, and dead-lettered, too.
  The exact cursor skips nothing: a Jetstream instance stamps ``time_us`` from one monotonic
  clock in its sequencer and sends events in that order, live or replayed.
- A connection on which no frame arrives for ``idle_timeout_s`` (a stalled server that may still
  answer pings) is aborted without a close handshake (a stalled peer would not answer it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import zstandard
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode

from streampulse.backoff import Backoff
from streampulse.errors import MalformedEvent
from streampulse.settings import IngestSettings, JetstreamSettings

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 64  # frames the websocket buffers before it stops reading the socket

# Why a connection ended: the ``cause`` label of the reconnects metric.
CLOSED = "closed"  # the server closed it with a close frame
LOST = "lost"  # it broke without one (reset, abort)
REFUSED = "refused"  # no connection: refused, timed out, or a failed handshake
IDLE = "idle"  # no frame for idle_timeout_s
OVERSIZED = "oversized_frame"  # a frame over the websocket limit
PAST_OVERSIZED = "past_oversized_frame"  # planned: past an oversized frame, the filter is lifted

FrameHandler = Callable[[bytes, int, MalformedEvent | None], bool]
"""Called with (decoded bytes, bytes on the wire, decoding error or None); False stops."""


@dataclass(frozen=True)
class _Ended:
    """How a connection ended: the metric's cause, a log line's reason, and for a planned
    reconnect the exact cursor to resume at."""

    cause: str
    reason: str
    resume_at: int | None = None


def subscribe_url(
    endpoint: str,
    settings: JetstreamSettings,
    cursor: int | None,
    *,
    max_message_bytes: int | None = None,
) -> str:
    """The /subscribe URL with the filters, compression and cursor as query parameters.

    ``max_message_bytes`` overrides the configured ``maxMessageSizeBytes`` for this connection.
    """
    params: list[tuple[str, str]] = [("wantedCollections", c) for c in settings.collections]
    params += [("wantedDids", d) for d in settings.dids]
    if settings.compress:
        params.append(("compress", "true"))
    size = max_message_bytes if max_message_bytes is not None else settings.max_message_bytes
    if size:
        params.append(("maxMessageSizeBytes", str(size)))
    if cursor is not None:
        params.append(("cursor", str(cursor)))
    return f"{endpoint}?{urlencode(params)}" if params else endpoint


def websocket_limit(max_event_bytes: int, *, compressed: bool) -> int:
    """The largest frame accepted: the largest event, plus zstd's worst-case expansion
    (``ZSTD_COMPRESSBOUND``) when frames are compressed."""
    if not compressed:
        return max_event_bytes
    small = (128 * 1024 - max_event_bytes) >> 11 if max_event_bytes < 128 * 1024 else 0
    return max_event_bytes + (max_event_bytes >> 8) + small + 64  # + a frame header's bytes


class ZstdFrames:
    """Undoes Jetstream's compression (one zstd frame per message, made with the shared
    dictionary) without ever producing more than ``max_event_bytes``."""

    def __init__(self, dictionary: bytes, max_event_bytes: int) -> None:
        self._zstd = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
        self._max = max_event_bytes

    def decompress(self, payload: bytes) -> bytes:
        """The event in ``payload``; ``MalformedEvent`` if it is not one zstd frame of at most
        ``max_event_bytes``. The size a frame's header declares is checked before anything is
        allocated: ``ZstdDecompressor.decompress`` allocates all of it, whatever its
        ``max_output_size`` (which bounds only frames that do not declare one)."""
        try:
            declared = zstandard.frame_content_size(payload)  # -1: not in the header
            if declared > self._max:
                raise MalformedEvent(
                    "oversized_event",
                    f"zstd frame declares {declared} bytes, more than {self._max}",
                )
            return self._zstd.decompress(payload, max_output_size=self._max)
        except zstandard.ZstdError as exc:
            raise MalformedEvent("bad_compression", str(exc)) from exc


def _reraise_pending_cancel() -> None:
    """Closing a broken socket can replace a CancelledError; a stop request must still win."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class JetstreamClient:
    """Yields frames from the first endpoint that answers, forever, across disconnects."""

    def __init__(
        self,
        jetstream: JetstreamSettings,
        ingest: IngestSettings,
        dictionary: bytes | None,
        *,
        on_reconnect: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_reconnect(endpoint, cause)`` is called each time a connection ends or fails."""
        if jetstream.compress and dictionary is None:
            raise ValueError("compress=true needs the Jetstream zstd dictionary")
        self._jetstream = jetstream
        self._ingest = ingest
        self._frames = (
            ZstdFrames(dictionary, ingest.max_event_bytes)
            if jetstream.compress and dictionary is not None
            else None
        )
        self._max_event_bytes = ingest.max_event_bytes
        self._websocket_limit = websocket_limit(
            ingest.max_event_bytes, compressed=self._frames is not None
        )
        self._on_reconnect = on_reconnect
        self.connected_endpoint: str | None = None
        self._last_frame_at = 0.0
        self._idled = False
        # Set after an oversized frame: the newest time_us seen before it. While set, connections
        # ask the server to leave out events over the limit.
        self._skipping_after: int | None = None

    async def _abort_when_idle(self, websocket: ClientConnection) -> None:
        """Abort the connection when no frame arrived for ``idle_timeout_s`` (a stalled peer).

        One timer per connection, not one per frame: the receive loop only stamps the time.
        """
        timeout = self._ingest.idle_timeout_s
        while True:
            await asyncio.sleep(timeout / 4)
            if time.monotonic() - self._last_frame_at > timeout:
                log.warning("no frame for %.1fs; aborting the connection", timeout)
                self._idled = True
                websocket.transport.abort()
                return

    def _closed(
        self, exc: ConnectionClosed, newest: int | None, on_frame: FrameHandler
    ) -> _Ended | None:
        """Why a connection ended. A frame over the websocket limit is handed over as a bad
        frame and skipped on the next connection. None: the handler asked to stop."""
        if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
            self._skipping_after = newest if newest is not None else -1
            error = MalformedEvent(
                "oversized_frame", f"{exc.sent.reason}; the frame after time_us {newest}"
            )
            if not on_frame(b"", 0, error):
                return None
            return _Ended(OVERSIZED, f"oversized frame: {exc.sent.reason}")
        if self._idled:
            return _Ended(IDLE, f"no frame for {self._ingest.idle_timeout_s}s")
        if exc.rcvd is not None:
            return _Ended(CLOSED, f"closed by the server ({exc.rcvd.code})")
        return _Ended(LOST, "connection lost")

    async def _receive(
        self,
        websocket: ClientConnection,
        on_frame: FrameHandler,
        newest: Callable[[], int | None],
        backoff: Backoff,
    ) -> int | None:
        """Hand over frames until the connection ends (``ConnectionClosed``) or the handler
        stops (None). While skipping an oversized frame: returns the ``time_us`` of the first
        event past it."""
        decompress = self._frames.decompress if self._frames is not None else None
        skipping_after = self._skipping_after
        recv = websocket.recv
        monotonic = time.monotonic
        message = await recv(decode=False)
        backoff.reset()
        while True:
            self._last_frame_at = monotonic()
            if decompress is None:
                going = on_frame(message, len(message), None)
            else:
                try:
                    going = on_frame(decompress(message), len(message), None)
                except MalformedEvent as exc:
                    going = on_frame(message, len(message), exc)
            if not going:
                return None
            if skipping_after is not None:  # rare: only just after an oversized frame
                seen = newest()
                if seen is not None and seen > skipping_after:
                    return seen
            message = await recv(decode=False)

    async def _connection(
        self,
        endpoint: str,
        cursor: int | None,
        newest: Callable[[], int | None],
        on_frame: FrameHandler,
        backoff: Backoff,
    ) -> _Ended | None:
        """One connection from connect to its end, and why it ended; None: the handler stopped."""
        url = subscribe_url(
            endpoint,
            self._jetstream,
            cursor,
            max_message_bytes=self._max_event_bytes if self._skipping_after is not None else None,
        )
        self._idled = False
        try:
            async with connect(
                url,
                open_timeout=self._ingest.connect_timeout_s,
                max_size=self._websocket_limit,
                compression=None,
                max_queue=MAX_QUEUED_FRAMES,
            ) as websocket:
                self.connected_endpoint = endpoint
                log.info("connected to %s", url)
                self._last_frame_at = time.monotonic()
                watchdog = asyncio.create_task(self._abort_when_idle(websocket))
                try:
                    resume_at = await self._receive(websocket, on_frame, newest, backoff)
                finally:
                    watchdog.cancel()
                if resume_at is not None:
                    # Its buffered frames are not wanted, and behind them the server's answer
                    # to a close handshake would wait for the close timeout.
                    websocket.transport.abort()
            if resume_at is None:
                return None
            self._skipping_after = None
            return _Ended(PAST_OVERSIZED, f"past the oversized frame at {resume_at}", resume_at)
        except ConnectionClosed as exc:
            return self._closed(exc, newest(), on_frame)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            return _Ended(REFUSED, f"{type(exc).__name__}: {exc}")
        finally:
            self.connected_endpoint = None
            _reraise_pending_cancel()

    async def stream(
        self,
        cursor: Callable[[], int | None],
        newest: Callable[[], int | None],
        on_frame: FrameHandler,
    ) -> None:
        """Call ``on_frame`` for every frame, in server order, until it returns False.

        ``cursor()`` is asked for the resume point at each connect; ``newest()`` is the newest
        ``time_us`` the handler has seen. Frames are handed over synchronously from the receive
        loop: no queue and no generator between the socket and the handler, which is the hot path
        of ingestion.
        """
        backoff = Backoff(self._ingest.reconnect_initial_s, self._ingest.reconnect_max_s)
        endpoints = self._jetstream.endpoints
        index = 0
        resume_at: int | None = None  # a planned reconnect's exact cursor
        while True:
            endpoint = endpoints[index % len(endpoints)]
            at = resume_at if resume_at is not None else cursor()
            ended = await self._connection(endpoint, at, newest, on_frame, backoff)
            if ended is None:
                return
            if self._on_reconnect is not None:
                self._on_reconnect(endpoint, ended.cause)
            resume_at = ended.resume_at
            if resume_at is not None:
                log.info("%s: %s; reconnecting without the size filter", endpoint, ended.reason)
                continue  # same endpoint, at once: the cursor is exact, not rewound
            if ended.cause != OVERSIZED:  # an oversized frame is no fault of the endpoint
                index += 1
            delay = backoff.next_delay()
            log.warning("%s: %s; reconnecting in %.2fs", endpoint, ended.reason, delay)
            await asyncio.sleep(delay)
