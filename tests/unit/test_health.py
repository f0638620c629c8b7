"""The workers' probe endpoint: live while the event loop beats, ready once the worker said so,
503 when the loop stops (on its own thread, so it answers while the loop does not)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest

from streampulse.health import Heartbeat, keep_beating, serve_health
from streampulse.local.ports import free_port as _free_port

pytestmark = pytest.mark.unit


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_probes_follow_the_heartbeat() -> None:
    heartbeat = Heartbeat(stale_after_s=0.5)
    server = serve_health("127.0.0.1", 0, heartbeat)
    assert server is None  # port 0: off
    server = serve_health("127.0.0.1", _free_port(), heartbeat)
    assert server is not None
    port = server.server_address[1]
    try:
        assert status(port, "/healthz") == 200
        assert status(port, "/readyz") == 503  # not ready until the worker says so
        heartbeat.mark_ready()
        assert status(port, "/readyz") == 200
        assert status(port, "/nothing") == 404
        deadline = time.monotonic() + 5
        while status(port, "/healthz") == 200:  # no beats: stale after 0.5 s
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status(port, "/readyz") == 503
    finally:
        server.shutdown()


def test_a_blocked_loop_stops_the_beats() -> None:
    heartbeat = Heartbeat(stale_after_s=0.3)
    seen: list[bool] = []

    async def run() -> None:
        beating = asyncio.create_task(keep_beating(heartbeat, every_s=0.05))
        await asyncio.sleep(0.2)
        seen.append(heartbeat.live)
        time.sleep(0.6)  # noqa: ASYNC251 - the fault: the loop is stuck in a blocking call
        seen.append(heartbeat.live)
        await asyncio.sleep(0.1)
        seen.append(heartbeat.live)  # it runs again
        beating.cancel()

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(10)
    assert seen == [True, False, True]
