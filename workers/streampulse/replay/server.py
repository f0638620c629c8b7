"""The replay server: a Jetstream v1 ``/subscribe`` endpoint serving a recorded or synthetic stream.

``serve`` runs in any event loop until cancelled (tests run it in-process on port 0); ``run`` is
the process entrypoint behind ``streampulse replay``, which prints
``replay: listening on ws://HOST:PORT/subscribe`` once the socket is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus

import prometheus_client
import uvloop
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as websocket_serve
from websockets.http11 import Request, Response

from streampulse.replay.faults import PositionedFaults
from streampulse.replay.frames import FrameStore
from streampulse.replay.pacing import Pacer, make_pacer
from streampulse.replay.protocol import InvalidRequest, parse_subscribe
from streampulse.replay.sessions import handle
from streampulse.replay.sources import ReplaySetupError, load_dictionary, load_profile, require_dir
from streampulse.replay.streams import build_stream
from streampulse.settings import ReplaySettings, Settings

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
PING_INTERVAL_S = 20.0  # keepalive pings, as Jetstream clients expect a live connection
WRITE_LIMIT = (1 << 20, 1 << 18)  # transport buffer high/low water marks, bytes
CLIENT_MESSAGE_LIMIT = 1 << 20  # options_update with 10,000 DIDs fits comfortably
_FAULTS = frozenset(
    ("drop_after", "malformed_every", "silent_after", "bomb_every", "oversized_every", "deep_every")
)


def _pacer(settings: ReplaySettings) -> Pacer:
    profile = load_profile(require_dir(settings.data_dir)) if settings.rate == "profile" else None
    try:
        return make_pacer(settings.rate, profile)
    except ValueError as exc:
        raise ReplaySetupError(str(exc)) from exc


def url_of(host: str, port: int) -> str:
    """The subscribe URL of a bound server."""
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}/subscribe"


async def serve(
    settings: ReplaySettings,
    dictionary: bytes | None,
    *,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the stream of ``settings`` until cancelled; ``ready(port)`` once listening.

    ``dictionary`` is the zstd dictionary for ``compress=true``; without it such requests are
    refused with HTTP 400. Unlike live Jetstream, a connection without ``cursor`` starts at the
    beginning of the stream (not the live tail), and the stream is in ``time_us`` order.
    """
    pacer = _pacer(settings)
    stream = await asyncio.to_thread(build_stream, settings)
    store = FrameStore(stream, dictionary)
    positioned = PositionedFaults.from_settings(settings)
    store.warm()
    await store.warm_compressed()  # every frame of cycle 0 exists before the first client
    log.info(
        "replay stream %s: %d events, rate=%s, loop=%s, faults %s",
        settings.stream,
        len(stream.events),
        settings.rate,
        settings.loop,
        {name: value for name, value in settings.model_dump().items() if name in _FAULTS and value},
    )

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == HEALTH_PATH:
            return connection.respond(HTTPStatus.OK, "ok\n")
        try:
            subscribe = parse_subscribe(request.path, request.headers)
        except InvalidRequest as exc:
            status = HTTPStatus.NOT_FOUND if "no such path" in str(exc) else HTTPStatus.BAD_REQUEST
            return connection.respond(status, f"{exc}\n")
        if subscribe.compress and dictionary is None:
            return connection.respond(
                HTTPStatus.BAD_REQUEST, "compress=true is unavailable: no zstd dictionary\n"
            )
        return None

    async def handler(connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None  # set once the handshake succeeded
        subscribe = parse_subscribe(request.path, request.headers)
        await handle(connection, subscribe, store, pacer, settings, positioned=positioned)

    server: Server
    async with websocket_serve(
        handler,
        settings.host,
        settings.port,
        process_request=process_request,
        compression=None,  # frames are pre-encoded; Jetstream compresses with zstd instead
        ping_interval=PING_INTERVAL_S,
        max_size=CLIENT_MESSAGE_LIMIT,
        write_limit=WRITE_LIMIT,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        log.info("listening on %s", url_of(settings.host, port))
        if ready is not None:
            ready(port)
        await asyncio.get_running_loop().create_future()  # until cancelled


def run(settings: Settings) -> None:
    """Process entrypoint: metrics endpoint (if configured), uvloop, and ``serve``."""
    replay = settings.replay
    dictionary = load_dictionary(replay.data_dir)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.bind_host)

    def ready(port: int) -> None:
        print(f"replay: listening on {url_of(replay.host, port)}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(replay, dictionary, ready=ready))
