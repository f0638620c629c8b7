"""A Jetstream ``/subscribe`` client that keeps a stream going.

It fails over across the configured endpoints, reconnects with jittered exponential backoff,
asks each new connection to resume from the caller's cursor, and undoes zstd compression with the
shared dictionary. It yields frames as bytes; parsing is the caller's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import zstandard
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from streampulse.backoff import Backoff
from streampulse.errors import MalformedEvent
from streampulse.settings import IngestSettings, JetstreamSettings

log = logging.getLogger(__name__)

_MAX_FRAME_BYTES = 4 * 1024 * 1024
_MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024


FrameHandler = Callable[[bytes, int, MalformedEvent | None], bool]
"""Called with (decoded bytes, bytes on the wire, decoding error or None); False stops."""


def subscribe_url(endpoint: str, settings: JetstreamSettings, cursor: int | None) -> str:
    """The /subscribe URL with the filters, compression and cursor as query parameters."""
    params: list[tuple[str, str]] = [("wantedCollections", c) for c in settings.collections]
    params += [("wantedDids", d) for d in settings.dids]
    if settings.compress:
        params.append(("compress", "true"))
    if settings.max_message_bytes:
        params.append(("maxMessageSizeBytes", str(settings.max_message_bytes)))
    if cursor is not None:
        params.append(("cursor", str(cursor)))
    return f"{endpoint}?{urlencode(params)}" if params else endpoint


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
        if jetstream.compress and dictionary is None:
            raise ValueError("compress=true needs the Jetstream zstd dictionary")
        self._jetstream = jetstream
        self._ingest = ingest
        self._decompressor = (
            zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
            if jetstream.compress and dictionary is not None
            else None
        )
        self._on_reconnect = on_reconnect
        self.connected_endpoint: str | None = None
        self._last_frame_at = 0.0

    def _decompress(self, payload: bytes) -> bytes:
        assert self._decompressor is not None
        try:
            return self._decompressor.decompress(payload, max_output_size=_MAX_DECOMPRESSED_BYTES)
        except zstandard.ZstdError as exc:
            raise MalformedEvent("bad_compression", str(exc)) from exc

    async def _close_when_idle(self, websocket: ClientConnection) -> None:
        """Close the connection when no frame arrived for ``idle_timeout_s`` (a stalled peer).

        One timer per connection, not one per frame: the receive loop only stamps the time.
        """
        timeout = self._ingest.idle_timeout_s
        while True:
            await asyncio.sleep(timeout / 4)
            if time.monotonic() - self._last_frame_at > timeout:
                log.warning("no frame for %.0fs; closing the connection", timeout)
                await websocket.close(code=1001, reason="idle")
                return

    async def stream(self, cursor: Callable[[], int | None], on_frame: FrameHandler) -> None:
        """Call ``on_frame`` for every frame, in server order, until it returns False.

        ``cursor()`` is asked for the resume point at each connect. Frames are handed over
        synchronously from the receive loop: no queue and no generator between the socket and the
        handler, which is the hot path of ingestion.
        """
        backoff = Backoff(self._ingest.reconnect_initial_s, self._ingest.reconnect_max_s)
        endpoints = self._jetstream.endpoints
        decompress = self._decompress if self._decompressor is not None else None
        index = 0
        while True:
            endpoint = endpoints[index % len(endpoints)]
            url = subscribe_url(endpoint, self._jetstream, cursor())
            reason = ""
            try:
                async with connect(
                    url,
                    open_timeout=self._ingest.connect_timeout_s,
                    max_size=_MAX_FRAME_BYTES,
                    compression=None,
                    max_queue=64,
                ) as websocket:
                    self.connected_endpoint = endpoint
                    log.info("connected to %s", url)
                    self._last_frame_at = time.monotonic()
                    watchdog = asyncio.create_task(self._close_when_idle(websocket))
                    recv = websocket.recv
                    monotonic = time.monotonic
                    try:
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
                                return
                            message = await recv(decode=False)
                    finally:
                        watchdog.cancel()
            except ConnectionClosed as exc:
                reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'abnormally'})"
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected_endpoint = None
            _reraise_pending_cancel()
            index += 1
            delay = backoff.next_delay()
            log.warning("%s: %s; reconnecting in %.2fs", endpoint, reason, delay)
            if self._on_reconnect is not None:
                self._on_reconnect(endpoint, reason)
            await asyncio.sleep(delay)
