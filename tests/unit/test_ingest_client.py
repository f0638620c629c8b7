"""The pure parts of the Jetstream client (URLs, limits, zstd frames) and the local stack's
status line."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import zstandard

from streampulse.backoff import Backoff
from streampulse.errors import MalformedEvent
from streampulse.ingest.jetstream import ZstdFrames, subscribe_url, websocket_limit
from streampulse.local.status import Rates, human_duration, progress_line
from streampulse.replay.faults import zstd_bomb
from streampulse.settings import JetstreamSettings

pytestmark = pytest.mark.unit


def test_subscribe_url_carries_filters_compression_and_cursor() -> None:
    settings = JetstreamSettings(
        endpoints=("wss://example.invalid/subscribe",),
        collections=("app.bsky.feed.post", "app.bsky.graph.*"),
        dids=("did:plc:a",),
        compress=True,
        max_message_bytes=1_000_000,
    )
    url = subscribe_url(settings.endpoints[0], settings, cursor=1_725_911_162_329_308)
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "wantedCollections": ["app.bsky.feed.post", "app.bsky.graph.*"],
        "wantedDids": ["did:plc:a"],
        "compress": ["true"],
        "maxMessageSizeBytes": ["1000000"],
        "cursor": ["1725911162329308"],
    }


def test_subscribe_url_without_options_is_the_endpoint() -> None:
    settings = JetstreamSettings(endpoints=("ws://h/subscribe",), compress=False)
    assert subscribe_url("ws://h/subscribe", settings, cursor=None) == "ws://h/subscribe"


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(8)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 8.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.25, "0.2s"), (59.0, "59.0s"), (90.0, "1.5m"), (7200.0, "2.0h"), (12_533_204.7, "145.1d")],
)
def test_human_duration(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_progress_line_shows_rates_by_collection() -> None:
    rates = Rates()
    first = {
        "streampulse_ingest_events_total": {
            "app.bsky.feed.like": 100.0,
            "app.bsky.feed.post": 10.0,
        },
        "streampulse_ingest_lag_seconds": {"": 1.5},
        "streampulse_dead_letters_total": {"ingest,invalid_json": 2.0, "enrich,timeout": 5.0},
    }
    progress_line(first, rates)
    rates.previous_at -= 2.0  # as if the second scrape came two seconds later
    second = {
        **first,
        "streampulse_ingest_events_total": {
            "app.bsky.feed.like": 500.0,
            "app.bsky.feed.post": 50.0,
        },
    }
    line = progress_line(second, rates)
    assert "like 200" in line
    assert "post 20" in line
    assert "dead letters 2" in line
    assert "lag 1.5s" in line


def test_a_size_filter_can_be_asked_for_one_connection() -> None:
    settings = JetstreamSettings(endpoints=("ws://h/subscribe",), compress=False)
    url = subscribe_url("ws://h/subscribe", settings, cursor=5, max_message_bytes=4096)
    assert parse_qs(urlsplit(url).query) == {"maxMessageSizeBytes": ["4096"], "cursor": ["5"]}


@pytest.mark.parametrize("max_event_bytes", [1024, 100_000, 4 << 20, 64 << 20])
def test_the_websocket_limit_fits_any_compressed_event_under_the_event_limit(
    max_event_bytes: int,
) -> None:
    assert websocket_limit(max_event_bytes, compressed=False) == max_event_bytes
    limit = websocket_limit(max_event_bytes, compressed=True)
    incompressible = random.Random(max_event_bytes).randbytes(max_event_bytes)
    assert max_event_bytes < len(zstandard.ZstdCompressor().compress(incompressible)) <= limit
    assert limit < max_event_bytes * 1.01 + 1024


@pytest.fixture(scope="module")
def frames(jetstream_data_dir: Path) -> ZstdFrames:
    return ZstdFrames((jetstream_data_dir / "zstd_dictionary_v1.bin").read_bytes(), 1 << 20)


def test_zstd_frames_decompress_events(frames: ZstdFrames, jetstream_data_dir: Path) -> None:
    dictionary = zstandard.ZstdCompressionDict(
        (jetstream_data_dir / "zstd_dictionary_v1.bin").read_bytes()
    )
    event = b'{"did":"did:plc:a","time_us":1,"kind":"account","account":{"active":true}}'
    compressor = zstandard.ZstdCompressor(dict_data=dictionary, write_content_size=True)
    assert frames.decompress(compressor.compress(event)) == event


def test_a_frame_declaring_too_much_is_refused_before_anything_is_allocated(
    frames: ZstdFrames,
) -> None:
    bomb = zstd_bomb(1 << 32)  # 4 GiB declared, and held, in 128 KiB
    with pytest.raises(MalformedEvent) as caught:
        frames.decompress(bomb)
    assert caught.value.reason == "oversized_event"
    assert str(1 << 32) in str(caught.value)


def test_a_frame_without_a_declared_size_is_cut_at_the_limit(frames: ZstdFrames) -> None:
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b" " * (2 << 20))
    assert zstandard.frame_content_size(unsized) == -1
    with pytest.raises(MalformedEvent) as caught:
        frames.decompress(unsized)
    assert caught.value.reason == "bad_compression"


@pytest.mark.parametrize("payload", [b"", b"{not zstd}", zstd_bomb(1 << 20)[:20]])
def test_broken_zstd_is_bad_compression(frames: ZstdFrames, payload: bytes) -> None:
    with pytest.raises(MalformedEvent) as caught:
        frames.decompress(payload)
    assert caught.value.reason == "bad_compression"
