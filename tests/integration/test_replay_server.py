"""The replay server over real websockets: filters, cursor, compression, client messages, faults.

Each test starts the server in-process on a free port and talks to it with a websockets client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import websockets.asyncio.client
import zstandard
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from streampulse.events import LIKE, POST
from streampulse.replay import Filters, Stream, build_stream, serve
from streampulse.replay.faults import KINDS
from streampulse.replay.sources import load_dictionary
from streampulse.settings import ReplaySettings, Settings

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def base_settings() -> ReplaySettings:
    settings = Settings().replay
    if settings.data_dir is None:
        pytest.fail(
            "STREAMPULSE_REPLAY__DATA_DIR is not set: point it at the Jetstream captures "
            "(the Makefile exports it; e.g. ../shared/data/jetstream)"
        )
    return settings.model_copy(
        update={"port": 0, "host": "127.0.0.1", "rate": "max", "synthetic_events": 1500}
    )


@pytest.fixture(scope="module")
def dictionary(base_settings: ReplaySettings) -> bytes:
    found = load_dictionary(base_settings.data_dir)
    if found is None:
        pytest.fail(f"no zstd_dictionary_v1.bin in {base_settings.data_dir}")
    return found


@contextlib.asynccontextmanager
async def running(settings: ReplaySettings, dictionary: bytes | None) -> AsyncIterator[str]:
    """The subscribe URL of a server running in this event loop until the block ends."""
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, dictionary, ready=ready.set_result))
    started: set[asyncio.Future[Any]] = {ready, task}
    await asyncio.wait(started, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped the server
    assert ready.done(), "server did not become ready"
    try:
        yield f"ws://127.0.0.1:{ready.result()}/subscribe"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def scenario(
    settings: ReplaySettings, dictionary: bytes | None, body: Callable[[str], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with asyncio.timeout(DEADLINE_S), running(settings, dictionary) as url:
            await body(url)

    asyncio.run(main())


async def receive(ws: ClientConnection, count: int) -> list[bytes]:
    return [await ws.recv(decode=False) for _ in range(count)]


async def assert_quiet(ws: ClientConnection, seconds: float = 0.5) -> None:
    """Nothing more arrives within ``seconds`` (the stream is over for this client)."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await ws.recv(decode=False)


def raws(stream: Stream, filters: Filters | None = None, start: int = 0) -> list[bytes]:
    return [e.raw for e in stream.events[start:] if filters is None or filters.accepts_event(e)]


def connect(url: str) -> websockets.asyncio.client.connect:
    return websockets.asyncio.client.connect(url, max_size=None, compression=None)


def test_serves_every_event_byte_for_byte_in_order(base_settings: ReplaySettings) -> None:
    stream = build_stream(base_settings)

    async def body(url: str) -> None:
        async with connect(url) as ws:
            got = await receive(ws, len(stream.events))
            assert got == raws(stream)
            await assert_quiet(ws)

    scenario(base_settings, None, body)


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        (
            "wantedCollections=app.bsky.graph.*&wantedCollections=app.bsky.feed.post",
            Filters.create(["app.bsky.graph.*", POST]),
        ),
        (
            "wantedCollections=app.bsky.feed.like&maxMessageSizeBytes=600",
            Filters.create([LIKE], max_message_bytes=600),
        ),
    ],
)
def test_collection_filters_with_prefixes(
    base_settings: ReplaySettings, query: str, filters: Filters
) -> None:
    stream = build_stream(base_settings)
    expected = raws(stream, filters)
    assert 0 < len(expected) < len(stream.events)

    async def body(url: str) -> None:
        async with connect(f"{url}?{query}") as ws:
            assert await receive(ws, len(expected)) == expected
            await assert_quiet(ws)

    scenario(base_settings, None, body)


def test_wanted_dids(base_settings: ReplaySettings) -> None:
    stream = build_stream(base_settings)
    dids = [did for did, _ in collections.Counter(e.did for e in stream.events).most_common(3)]
    expected = raws(stream, Filters.create(wanted_dids=dids))
    assert all(orjson.loads(raw)["did"] in dids for raw in expected)

    async def body(url: str) -> None:
        query = "&".join(f"wantedDids={d}" for d in dids)
        async with connect(f"{url}?{query}") as ws:
            assert await receive(ws, len(expected)) == expected
            await assert_quiet(ws)

    scenario(base_settings, None, body)


def test_cursor_starts_at_the_first_event_at_or_after_it(base_settings: ReplaySettings) -> None:
    stream = build_stream(base_settings)
    cursor = stream.events[400].time_us
    start = stream.times.index(cursor)  # first event with that time

    async def body(url: str) -> None:
        async with connect(f"{url}?cursor={cursor}") as ws:
            got = await receive(ws, len(stream.events) - start)
            assert got == raws(stream, start=start)
            assert all(orjson.loads(raw)["time_us"] >= cursor for raw in got)
            await assert_quiet(ws)
        async with connect(f"{url}?cursor={stream.events[-1].time_us + 1}") as ws:
            await assert_quiet(ws)  # past the end: nothing (no live tail to follow)

    scenario(base_settings, None, body)


def test_compressed_frames_decompress_to_the_same_bytes(
    base_settings: ReplaySettings, dictionary: bytes
) -> None:
    stream = build_stream(base_settings)
    decompressor = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))

    async def body(url: str) -> None:
        async with connect(f"{url}?compress=true&wantedCollections=app.bsky.feed.*") as ws:
            expected = raws(stream, Filters.create(["app.bsky.feed.*"]))
            messages = [await ws.recv() for _ in expected]
            frames = [m for m in messages if isinstance(m, bytes)]
            assert len(frames) == len(messages)  # binary messages, one zstd frame each
            assert [decompressor.decompress(frame) for frame in frames] == expected
            assert sum(map(len, frames)) < 0.7 * sum(map(len, expected))

    scenario(base_settings, dictionary, body)


def test_compression_without_dictionary_is_refused(base_settings: ReplaySettings) -> None:
    async def body(url: str) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{url}?compress=true"):
                pass
        assert refused.value.response.status_code == 400

    scenario(base_settings.model_copy(update={"stream": "recorded"}), None, body)


@pytest.mark.parametrize(
    ("target", "status"),
    [("/subscribe?cursor=soon", 400), ("/subscribe?wantedDids=bob", 400), ("/firehose", 404)],
)
def test_bad_handshakes_get_http_errors(
    base_settings: ReplaySettings, target: str, status: int
) -> None:
    async def body(url: str) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url.removesuffix("/subscribe") + target):
                pass
        assert refused.value.response.status_code == status

    scenario(base_settings.model_copy(update={"stream": "recorded"}), None, body)


def test_options_update_changes_filters_mid_stream(base_settings: ReplaySettings) -> None:
    settings = base_settings.model_copy(update={"rate": "1500"})
    stream = build_stream(settings)
    everything = raws(stream)
    posts_only = Filters.create([POST])

    async def body(url: str) -> None:
        async with connect(url) as ws:
            got = await receive(ws, 100)
            await ws.send("this is not an options_update")  # ignored, connection stays
            await ws.send(orjson.dumps({"type": "options_update", "payload": []}).decode())
            await ws.send(
                orjson.dumps(
                    {"type": "options_update", "payload": {"wantedCollections": [POST]}}
                ).decode()
            )
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        got.append(await ws.recv(decode=False))
                except TimeoutError:
                    break
        # Events already on their way when the update landed arrive unfiltered; from the
        # first event the old filters would have sent and the new ones do not, only posts.
        switch = next(i for i, (a, b) in enumerate(zip(got, everything, strict=False)) if a != b)
        assert 100 <= switch < len(everything) - 200  # switched while streaming
        assert got[switch:] == raws(stream, posts_only, start=switch)

    scenario(settings, None, body)


def test_drop_after_closes_abruptly_after_n_events(base_settings: ReplaySettings) -> None:
    settings = base_settings.model_copy(update={"drop_after": 50})
    stream = build_stream(settings)

    async def body(url: str) -> None:
        for cursor_index in (0, 50):  # a reconnect resumes and is dropped again
            cursor = stream.events[cursor_index].time_us
            async with connect(f"{url}?cursor={cursor}") as ws:
                got = await receive(ws, 50)
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
                assert closed.value.rcvd is None  # no close frame: abnormal closure (1006)
            start = stream.times.index(cursor)
            assert got == raws(stream, start=start)[:50]

    scenario(settings, None, body)


def _malformed_kind(payload: bytes) -> str:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if "did" not in data or "time_us" not in data:
        return "missing_fields"
    if not isinstance(data["did"], str) or not isinstance(data["time_us"], int):
        return "wrong_types"
    if data["kind"] not in ("commit", "identity", "account"):
        return "unknown_kind"
    assert len(data["commit"]["record"]["text"]) > 3000
    return "huge_text"


@pytest.mark.parametrize("compress", [False, True])
def test_malformed_every_n_events_are_extra_frames(
    base_settings: ReplaySettings, dictionary: bytes, compress: bool
) -> None:
    settings = base_settings.model_copy(update={"malformed_every": 7, "stream": "recorded"})
    stream = build_stream(settings)
    good = raws(stream)
    total = len(good) + len(good) // 7
    decompressor = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
    before = (
        REGISTRY.get_sample_value(
            "streampulse_replay_malformed_sent_total",
            {"compress": str(compress).lower(), "kind": "huge_text"},
        )
        or 0.0
    )

    async def body(url: str) -> None:
        async with connect(f"{url}?compress={str(compress).lower()}") as ws:
            frames = await receive(ws, total)
            await assert_quiet(ws)
        payloads = [decompressor.decompress(f) if compress else f for f in frames]
        events = [p for i, p in enumerate(payloads) if (i + 1) % 8]
        malformed = [p for i, p in enumerate(payloads) if not (i + 1) % 8]
        assert events == good  # nothing lost, nothing replaced
        kinds = [_malformed_kind(p) for p in malformed]
        assert kinds == [KINDS[i % len(KINDS)] for i in range(len(malformed))]

    scenario(settings, dictionary, body)
    after = REGISTRY.get_sample_value(
        "streampulse_replay_malformed_sent_total",
        {"compress": str(compress).lower(), "kind": "huge_text"},
    )
    sent = len(good) // 7
    assert after == before + sum(KINDS[i % len(KINDS)] == "huge_text" for i in range(sent))


def test_require_hello_waits_for_the_first_options_update(base_settings: ReplaySettings) -> None:
    stream = build_stream(base_settings)
    likes = Filters.create([LIKE])

    async def body(url: str) -> None:
        async with connect(f"{url}?requireHello=true") as ws:
            await assert_quiet(ws)
            await ws.send("{}")  # not an options_update: still nothing
            await assert_quiet(ws, 0.3)
            update = {"type": "options_update", "payload": {"wantedCollections": [LIKE]}}
            await ws.send(orjson.dumps(update).decode())
            expected = raws(stream, likes)
            assert await receive(ws, len(expected)) == expected

    scenario(base_settings, None, body)


def test_fixed_rate_paces_by_deadlines(base_settings: ReplaySettings) -> None:
    settings = base_settings.model_copy(update={"rate": "400"})

    async def body(url: str) -> None:
        async with connect(url) as ws:
            await ws.recv()
            started = time.monotonic()
            await receive(ws, 400)
            elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 3.0  # 400 events at 400/s: about a second

    scenario(settings, None, body)


def test_loop_repeats_with_shifted_times_and_unique_ids(base_settings: ReplaySettings) -> None:
    settings = base_settings.model_copy(
        update={"stream": "synthetic", "synthetic_events": 300, "loop": True}
    )
    stream = build_stream(settings)

    async def body(url: str) -> None:
        async with connect(url) as ws:
            got = await receive(ws, 3 * 300 + 10)
        assert got[:300] == raws(stream)
        assert got[300:600] == raws(stream.cycle(1))
        assert got[600:900] == raws(stream.cycle(2))
        times = [orjson.loads(raw)["time_us"] for raw in got]
        assert all(a < b for a, b in itertools.pairwise(times))

    scenario(settings, None, body)


def test_metrics_count_connections_and_events(base_settings: ReplaySettings) -> None:
    settings = base_settings.model_copy(update={"stream": "recorded"})
    stream = build_stream(settings)

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"compress": "false"}) or 0.0

    before = sample("streampulse_replay_events_sent_total")
    connections = sample("streampulse_replay_connections_total")

    async def body(url: str) -> None:
        async with connect(url) as ws:
            await receive(ws, len(stream.events))

    scenario(settings, None, body)
    assert sample("streampulse_replay_events_sent_total") == before + len(stream.events)
    assert sample("streampulse_replay_connections_total") == connections + 1


def test_run_prints_the_bound_url(base_settings: ReplaySettings) -> None:
    env = {
        **os.environ,
        "STREAMPULSE_REPLAY__DATA_DIR": str(base_settings.data_dir),
        "STREAMPULSE_REPLAY__PORT": "0",
        "STREAMPULSE_REPLAY__STREAM": "recorded",
        "STREAMPULSE_REPLAY__RATE": "max",
    }
    code = (
        "from streampulse.replay import run; from streampulse.settings import Settings; "
        "run(Settings())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the process prints it once bound
        assert line.startswith("replay: listening on ws://127.0.0.1:")
        url = line.split()[-1]

        async def first_event() -> bytes:
            async with connect(url) as ws:
                return await ws.recv(decode=False)

        first = asyncio.run(asyncio.wait_for(first_event(), DEADLINE_S))
        recorded = build_stream(base_settings.model_copy(update={"stream": "recorded"}))
        assert first == recorded.events[0].raw
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE_S)
