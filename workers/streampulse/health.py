"""Liveness and readiness of a worker process for the kubelet's probes.

A ``Heartbeat`` is beaten by a task on the worker's event loop (``keep_beating``): when the loop
is stuck (a blocking call, a deadlock), the beats stop and ``/healthz`` answers 503, so the
kubelet restarts the pod. ``/readyz`` answers 200 once the worker marked itself ready (its topics
exist and it has started consuming or streaming) and while it is live. The endpoint runs on its
own thread, so it answers even when the loop does not.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class Heartbeat:
    """The newest beat of a loop, and whether the process is ready for work."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self._last = time.monotonic()
        self._ready = False

    def beat(self) -> None:
        self._last = time.monotonic()

    def mark_ready(self, ready: bool = True) -> None:
        self._ready = ready

    @property
    def live(self) -> bool:
        return time.monotonic() - self._last <= self.stale_after_s

    @property
    def ready(self) -> bool:
        return self._ready and self.live


async def keep_beating(heartbeat: Heartbeat, every_s: float = 1.0) -> None:
    """Beat until cancelled; run it as a task on the loop whose health it reports."""
    while True:
        heartbeat.beat()
        await asyncio.sleep(every_s)


def _handler(heartbeat: Heartbeat) -> type[BaseHTTPRequestHandler]:
    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/healthz": lambda: heartbeat.live, "/readyz": lambda: heartbeat.ready}
            check = checks.get(self.path)
            if check is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            ok = check()
            body = b"ok\n" if ok else b"unavailable\n"
            self.send_response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would flood the log."""

    return Probe


def serve_health(host: str, port: int, heartbeat: Heartbeat) -> ThreadingHTTPServer | None:
    """Serve /healthz and /readyz on ``port`` (0: off) from a daemon thread."""
    if not port:
        return None
    server = ThreadingHTTPServer((host, port), _handler(heartbeat))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health on http://%s:%d/healthz", host, port)
    return server
