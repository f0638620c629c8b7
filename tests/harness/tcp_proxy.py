"""A TCP proxy on loopback that injects network faults between a client and a real server.

``TcpProxy(upstream_port)`` listens on a free loopback port and forwards to the upstream; its
mode can be changed at any time from the test's thread, and applies to the connections already
open as well as to new ones:

- ``PASS``: forward both ways;
- ``LATENCY``: forward, each answer of the server ``latency_s`` late (a slow server);
- ``BLACKHOLE``: accept, read and discard, never answer (a hung server, or a partition that
  drops packets): clients only learn from their own timeouts;
- ``RESET``: abort connections with a TCP RST; with ``reset_ratio`` < 1 only that share of the
  requests (seeded), the others pass (a flapping server or load balancer);
- ``REFUSE``: stop listening, so connecting fails at once (ECONNREFUSED), and reset the
  connections already open (the server's process is gone);
- ``PARTITION``: a network partition: the connections already open go silent both ways, and
  new ones hang in the handshake (the port's accept queue is full and never drained, so the
  kernel drops their SYNs): clients only learn from their connect timeouts.

The proxy runs its own event loop on a daemon thread; ``stats`` counts what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024


class Mode(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    REFUSE = "refuse"
    PARTITION = "partition"


@dataclass
class ProxyStats:
    accepted: int = 0
    forwarded_bytes: int = 0
    dropped_bytes: int = 0
    resets: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    asked: bool = False  # a request went up since the last answer began


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with an RST (linger 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._mode = Mode.PASS
        self._latency_s = 0.0
        self._reset_ratio = 1.0
        self._rng = random.Random(0)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._sink: socket.socket | None = None  # PARTITION: listening, never accepting
        self.stats = ProxyStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port: int = sock.getsockname()[1]
        sock.close()
        self._call(self._listen())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(
        self, mode: Mode, *, latency_s: float = 0.0, reset_ratio: float = 1.0, seed: int = 0
    ) -> None:
        self._call(self._set_mode(mode, latency_s, reset_ratio, seed))

    def close(self) -> None:
        self._call(self._set_mode(Mode.REFUSE, 0.0, 1.0, 0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- on the proxy's loop ----------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _set_mode(self, mode: Mode, latency_s: float, reset_ratio: float, seed: int) -> None:
        self._mode, self._latency_s, self._reset_ratio = mode, latency_s, reset_ratio
        self._rng = random.Random(seed)
        if mode in (Mode.REFUSE, Mode.PARTITION) and self._server is not None:
            self._server.close()
            self._server = None
        if mode is not Mode.PARTITION and self._sink is not None:
            self._sink.close()  # what waited in its queue is reset
            self._sink = None
        if mode is Mode.PARTITION and self._sink is None:
            self._sink = socket.socket()
            self._sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sink.bind(("127.0.0.1", self.port))
            self._sink.listen(0)
        if mode in (Mode.REFUSE, Mode.RESET) and reset_ratio >= 1.0:
            for link in list(self._links):
                self._abort(link)
        if mode not in (Mode.REFUSE, Mode.PARTITION):
            await self._listen()

    def _abort(self, link: _Link) -> None:
        if link not in self._links:
            return
        self.stats.resets += 1
        _reset(link.client)
        if link.upstream is not None:
            _reset(link.upstream)
        self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._mode in (Mode.RESET, Mode.REFUSE) and self._reset_ratio >= 1.0:
                self._abort(link)
                return
            if self._mode is Mode.BLACKHOLE:
                await self._swallow(reader, link)
                return
            up_reader, link.upstream = await asyncio.open_connection(*self._upstream)
            await asyncio.gather(
                self._pump(reader, link.upstream, link, to_client=False),
                self._pump(up_reader, writer, link, to_client=True),
            )
        except (ConnectionError, OSError):
            self._abort(link)
        finally:
            self._links.discard(link)
            for w in (link.client, link.upstream):
                if w is not None and not w.is_closing():
                    w.close()

    async def _swallow(self, reader: asyncio.StreamReader, link: _Link) -> None:
        while link in self._links:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                return
            self.stats.dropped_bytes += len(chunk)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        to_client: bool,
    ) -> None:
        while link in self._links:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                writer.close()
                return
            mode = self._mode
            if mode in (Mode.BLACKHOLE, Mode.PARTITION):
                self.stats.dropped_bytes += len(chunk)
                continue
            if mode in (Mode.RESET, Mode.REFUSE) and (
                self._reset_ratio >= 1.0
                or (not to_client and self._rng.random() < self._reset_ratio)
            ):
                self._abort(link)
                return
            if to_client and link.asked and mode is Mode.LATENCY:
                await asyncio.sleep(self._latency_s)
            link.asked = not to_client
            writer.write(chunk)
            await writer.drain()
            self.stats.forwarded_bytes += len(chunk)
