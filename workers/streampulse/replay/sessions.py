"""One subscriber connection: its filters, its client messages, and the paced send loop.

Events are written as pre-encoded frames straight to the connection's transport, a batch per
write, with the connection's own flow control (``drain``) between batches; websockets still
handles the handshake, pings, client messages and the close handshake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import cast

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from streampulse.replay import faults, metrics
from streampulse.replay.frames import EncodedCycle, FrameStore, ws_frame
from streampulse.replay.pacing import Pacer
from streampulse.replay.protocol import Filters, InvalidRequest, SubscribeRequest
from streampulse.replay.protocol import parse_client_message as parse_message
from streampulse.settings import ReplaySettings

log = logging.getLogger(__name__)

BATCH = 512  # events considered per write; bounds latency and the size of one write
FLUSH_TIMEOUT_S = 5.0  # how long a drop waits for written events to reach the socket


@dataclass
class Session:
    """State shared by a connection's reader and sender."""

    connection: ServerConnection
    request: SubscribeRequest
    filters: Filters
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    malformed: int = 0
    outcome: str = "closed by client"

    @property
    def peer(self) -> str:
        address = self.connection.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    @property
    def label(self) -> str:
        return "true" if self.request.compress else "false"


async def read_messages(session: Session) -> None:
    """Apply each ``options_update``; log and ignore anything else."""
    try:
        async for message in session.connection:
            try:
                filters = parse_message(message)
            except InvalidRequest as exc:
                metrics.CLIENT_MESSAGES.labels("ignored").inc()
                log.warning("ignored client message from %s: %s", session.peer, exc)
                continue
            session.filters = filters
            session.hello.set()
            metrics.CLIENT_MESSAGES.labels("applied").inc()
            log.info(
                "options_update from %s: %s",
                session.peer,
                orjson.dumps(filters.describe()).decode(),
            )
    except ConnectionClosed:
        pass


async def _wait_for_hello(session: Session) -> bool:
    """Wait for the first options_update; False if the connection closed first."""
    hello = asyncio.ensure_future(session.hello.wait())
    closed = asyncio.ensure_future(session.connection.wait_closed())
    await asyncio.wait({hello, closed}, return_when=asyncio.FIRST_COMPLETED)
    hello.cancel()
    closed.cancel()
    return session.hello.is_set()


DROP = "drop"
SILENCE = "silence"


class Sender:
    """The send loop of one session: cursor, pacing, filters, loop cycles and faults."""

    def __init__(
        self,
        session: Session,
        store: FrameStore,
        pacer: Pacer,
        settings: ReplaySettings,
        positioned: faults.PositionedFaults | None = None,
    ) -> None:
        self.session = session
        self.store = store
        self.pacer = pacer
        self.settings = settings
        self.compressor = store.compressor() if session.request.compress else None
        self.positioned = positioned or faults.PositionedFaults.from_settings(settings)

    def _malformed_frame(self, time_us: int) -> bytes:
        kind = faults.KINDS[self.session.malformed % len(faults.KINDS)]
        self.session.malformed += 1
        metrics.MALFORMED_SENT.labels(self.session.label, kind).inc()
        payload = faults.malformed_payload(kind, time_us)
        if self.compressor is not None:
            return ws_frame(self.compressor.compress(payload), text=False)
        return ws_frame(payload, text=True)

    def _positioned_frames(self, encoded: EncodedCycle, index: int) -> list[bytes]:
        """The positioned fault frames after event ``index`` of ``encoded`` that pass the size
        filter (a client that asks for ``maxMessageSizeBytes`` is spared larger ones)."""
        position = encoded.number * len(encoded) + index
        limit = self.session.filters.max_message_bytes
        chosen: list[bytes] = []
        for kind in self.positioned.after(position):
            fault = self.positioned.frame(kind, position, encoded.time_us(index), self.compressor)
            if fault is None or (limit and fault.size > limit):
                continue
            chosen.append(fault.frame)
            metrics.MALFORMED_SENT.labels(self.session.label, kind).inc()
        return chosen

    def _collect(
        self, encoded: EncodedCycle, index: int, stop: int
    ) -> tuple[list[bytes], str | None]:
        """The frames of positions ``index:stop`` this client gets, and what to do after them
        (``DROP``, ``SILENCE`` or nothing)."""
        session, every, drop_after, silent_after = (
            self.session,
            self.settings.malformed_every,
            self.settings.drop_after,
            self.settings.silent_after,
        )
        filters = session.filters
        encoded.fill(index, stop)
        frames = cast(list[bytes], encoded.frames)  # filled above
        positioned = bool(self.positioned)
        if filters.everything and not (every or drop_after or silent_after or positioned):
            session.sent += stop - index
            return frames[index:stop], None
        chunk: list[bytes] = []
        accepts, dids, collections, sizes = (
            filters.accepts,
            encoded.dids,
            encoded.collections,
            encoded.sizes,
        )
        for j in range(index, stop):
            if not accepts(dids[j], collections[j], sizes[j]):
                continue
            chunk.append(frames[j])
            session.sent += 1
            if every and session.sent % every == 0:
                chunk.append(self._malformed_frame(encoded.time_us(j)))
            if positioned:
                chunk += self._positioned_frames(encoded, j)
            if drop_after and session.sent >= drop_after:
                return chunk, DROP
            if silent_after and session.sent >= silent_after:
                return chunk, SILENCE
        return chunk, None

    async def run(self) -> None:
        """Send until the stream ends (then idle until the client leaves) or a fault closes."""
        session, settings, store = self.session, self.settings, self.store
        connection = session.connection
        compressed = session.request.compress
        cycle_number, index = store.stream.locate(session.request.cursor, loop=settings.loop)
        if session.request.require_hello and not await _wait_for_hello(session):
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        position = 0  # stream positions passed since start: what pacing counts
        events_sent = metrics.EVENTS_SENT.labels(session.label)
        while connection.protocol.state is State.OPEN:
            encoded = store.cycle(cycle_number, compressed=compressed)
            if index >= len(encoded):
                if not settings.loop or not len(encoded):
                    session.outcome = "stream ended; closed by client"
                    await connection.wait_closed()
                    return
                cycle_number, index = cycle_number + 1, 0
                continue
            allowed = self.pacer.due(loop.time() - start) - position
            if allowed <= 0:
                await asyncio.sleep(start + self.pacer.offset_of(position) - loop.time())
                continue
            stop = min(len(encoded), index + min(allowed, BATCH))
            before = session.sent
            chunk, then = self._collect(encoded, index, stop)
            position += stop - index
            index = stop
            if chunk:
                connection.transport.write(b"".join(chunk))
                events_sent.inc(session.sent - before)
            if then == DROP:
                await self._drop()
                return
            if then == SILENCE:
                await self._fall_silent()
                return
            await connection.drain()
            await asyncio.sleep(0)  # let readers and other connections run at rate=max

    async def _drop(self) -> None:
        """Fault: end the connection abruptly, without a close handshake (client sees 1006).

        The events already written are flushed first, so the client receives exactly
        ``drop_after`` events before the connection ends.
        """
        connection = self.session.connection
        metrics.DROPS.labels(self.session.label).inc()
        self.session.outcome = f"dropped after {self.session.sent} events (drop_after)"
        connection.transport.set_write_buffer_limits(high=0)  # drain() now waits for empty
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await connection.drain()
        except TimeoutError:
            log.warning("%s: buffer not flushed before drop", self.session.peer)
        connection.transport.abort()

    async def _fall_silent(self) -> None:
        """Fault: keep the connection open, answering pings, and send nothing until the client
        leaves: a stalled server that a websocket keepalive cannot tell from a healthy one."""
        metrics.SILENCES.labels(self.session.label).inc()
        self.session.outcome = f"silent after {self.session.sent} events (silent_after); closed"
        await self.session.connection.wait_closed()


async def handle(
    connection: ServerConnection,
    request: SubscribeRequest,
    store: FrameStore,
    pacer: Pacer,
    settings: ReplaySettings,
    *,
    positioned: faults.PositionedFaults | None = None,
) -> None:
    """Serve one subscriber from handshake to close, with a log line at each end."""
    session = Session(connection, request, request.filters)
    started = time.monotonic()
    metrics.CONNECTIONS.labels(session.label).inc()
    metrics.ACTIVE.inc()
    log.info(
        "subscribe %s",
        orjson.dumps(
            {
                "peer": session.peer,
                "cursor": request.cursor,
                "compress": request.compress,
                "requireHello": request.require_hello,
                **request.filters.describe(),
            }
        ).decode(),
    )
    reader = asyncio.create_task(read_messages(session))
    try:
        await Sender(session, store, pacer, settings, positioned).run()
    except (ConnectionClosed, ConnectionError):
        session.outcome = "connection lost"
    finally:
        reader.cancel()
        metrics.ACTIVE.dec()
        log.info(
            "unsubscribe %s",
            orjson.dumps(
                {
                    "peer": session.peer,
                    "sent": session.sent,
                    "malformed": session.malformed,
                    "seconds": round(time.monotonic() - started, 3),
                    "outcome": session.outcome,
                }
            ).decode(),
        )
