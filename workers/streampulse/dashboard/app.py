"""The dashboard's web server (aiohttp).

    GET /                 the page (static HTML, CSS and JS from this package; no CDN)
    GET /static/<file>    dashboard.css and the page's ES modules (dashboard.js, ...)
    GET /api/content      'Content intelligence': sections read from the Paimon tables
    GET /api/pipeline     'Pipeline': rates, latencies, lag and checkpoint age from the processes
    GET /healthz          the process is up

The API answers 200 with a ``state`` in the body whatever the warehouse or the targets are doing
(``waiting`` before the first checkpoint, ``error`` with a message when a read fails): the page
shows why a panel is empty instead of failing. The pipeline is polled in the background every
``refresh_s`` seconds, so rates cover the same interval however many pages are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streampulse.dashboard.checkpoints import flink_checkpoint
from streampulse.dashboard.content import ContentReader
from streampulse.dashboard.lag import ConsumerLag
from streampulse.dashboard.pipeline import PipelineMonitor
from streampulse.dashboard.scraping import scrape_all
from streampulse.dashboard.warehouse import Warehouse
from streampulse.errors import LakehouseError
from streampulse.settings import Settings

log = logging.getLogger(__name__)

STATIC_FILES = {
    "index.html": "text/html",
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",  # ES modules: the refresh loop,
    "dom.js": "text/javascript",  # building the DOM and formatting numbers,
    "content.js": "text/javascript",  # the content panels,
    "pipeline.js": "text/javascript",  # the pipeline panels
}
# The page only talks to this server; data never becomes markup (the script uses textContent).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: object) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _static() -> dict[str, bytes]:
    folder = resources.files("streampulse.dashboard") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


class Dashboard:
    """The state behind the page: the warehouse reader and the pipeline poller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.dashboard
        self.warehouse = Warehouse(settings.paimon, settings.local.state_dir / "warehouse")
        self.content = ContentReader(self.warehouse, self.settings)
        self.monitor = PipelineMonitor()
        self.lag = ConsumerLag(
            settings.kafka, self.settings.consumer_groups, self.settings.scrape_timeout_s
        )
        self.pipeline: dict[str, Any] | None = None
        self.polled = asyncio.Event()

    def content_payload(self) -> dict[str, Any]:
        try:
            return self.content.content()
        except Exception as exc:  # the page shows it; the next refresh tries again
            log.exception("content failed")
            return {"state": "error", "message": f"{type(exc).__name__}: {exc}"}

    def _paimon_checkpoint(self) -> dict[str, Any]:
        note = "newest Paimon commit (no Flink REST URL configured)"
        try:
            newest = self.content.newest_commit()
        except LakehouseError as exc:
            return {"source": "paimon", "note": note, "error": str(exc)}
        if newest is None:
            return {"source": "paimon", "note": note, "age_s": None, "completed_at": None}
        return {"source": "paimon", "note": note, **newest}

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        s = self.settings
        scrapes = await scrape_all(session, s.metrics_targets, s.scrape_timeout_s)
        if s.flink_rest_url:
            checkpoint = await flink_checkpoint(
                session, s.flink_rest_url, s.scrape_timeout_s, time.time()
            )
        else:
            checkpoint = await asyncio.to_thread(self._paimon_checkpoint)
        lag = await asyncio.to_thread(self.lag.read) if s.consumer_groups else None
        self.pipeline = {
            **self.monitor.update(scrapes, checkpoint, lag, time.time()),
            "refresh_s": s.refresh_s,
        }
        self.polled.set()

    async def poll_forever(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.monotonic()
                try:
                    await self.poll_once(session)
                except Exception:  # a bad answer must not stop the polling
                    log.exception("pipeline poll failed")
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(self.settings.refresh_s - elapsed, 0.5))


_DASHBOARD = web.AppKey("dashboard", Dashboard)
_FILES = web.AppKey("files", dict[str, bytes])


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The security headers on every answer, errors (404, 405, 500) included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    except Exception:  # the page says nothing of it; the log has the details (never values)
        log.exception("%s %s failed", request.method, request.path)
        response = web.Response(status=500, text="internal error\n")
    response.headers.update(SECURITY_HEADERS)
    return response


async def _file(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "index.html")
    body = request.app[_FILES].get(name)
    if body is None or name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8")


async def _content(request: web.Request) -> web.Response:
    dashboard = request.app[_DASHBOARD]
    return _json(await asyncio.to_thread(dashboard.content_payload))


async def _pipeline(request: web.Request) -> web.Response:
    dashboard = request.app[_DASHBOARD]
    wait_s = dashboard.settings.scrape_timeout_s * 3 + 2
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(dashboard.polled.wait(), timeout=wait_s)
    return _json(dashboard.pipeline or {"state": "starting", "refresh_s": 0})


async def _healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _poller(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[_DASHBOARD].poll_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(dashboard: Dashboard) -> web.Application:
    app = web.Application(middlewares=[_headers])
    app[_DASHBOARD] = dashboard
    app[_FILES] = _static()
    app.router.add_get("/", _file)
    app.router.add_get("/static/{name}", _file)
    app.router.add_get("/api/content", _content)
    app.router.add_get("/api/pipeline", _pipeline)
    app.router.add_get("/healthz", _healthz)
    app.cleanup_ctx.append(_poller)
    return app


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


async def run(settings: Settings, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; ``announce`` gets the page's URL once it is listening."""
    s = settings.dashboard
    runner = web.AppRunner(build_app(Dashboard(settings)), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, s.host, s.port)
        await site.start()
        port = int(runner.addresses[0][1])
        announce(_url(s.host, port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("dashboard stopping")
    finally:
        await runner.cleanup()


def serve(settings: Settings, announce: Callable[[str], None]) -> None:
    """Run the dashboard in this process until a stop signal."""
    import uvloop  # noqa: PLC0415 - only the server process needs it

    uvloop.run(run(settings, announce))
