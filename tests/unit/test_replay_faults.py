"""The replay server's positioned faults: where they go and what their bytes are."""

from __future__ import annotations

import orjson
import pytest
import zstandard

from streampulse.replay.faults import (
    BOMB,
    DEEP,
    DEEP_COLLECTION,
    NESTING_DEPTHS,
    OVERSIZED,
    PositionedFaults,
    deep_payload,
    oversized_payload,
    zstd_bomb,
)
from streampulse.replay.frames import Compressor
from streampulse.settings import ReplaySettings

pytestmark = pytest.mark.unit

TIME_US = 1_783_175_892_563_098


@pytest.mark.parametrize("size", [1, 1000, (1 << 17) - 1, 1 << 17, (1 << 17) + 1, 3 << 20])
def test_a_zstd_bomb_declares_and_holds_its_size(size: int) -> None:
    bomb = zstd_bomb(size)
    assert zstandard.frame_content_size(bomb) == size
    assert zstandard.ZstdDecompressor().decompress(bomb) == b" " * size
    assert len(bomb) < 32 + 4 * (size // (1 << 17) + 1)  # 4 bytes per 128 KiB block


def test_a_4_gib_bomb_fits_in_128_kib() -> None:
    bomb = zstd_bomb(1 << 32)
    assert zstandard.frame_content_size(bomb) == 1 << 32
    assert len(bomb) <= (128 << 10) + 32


def test_oversized_payloads_are_events_of_their_size_and_hardly_compress() -> None:
    payload = oversized_payload(TIME_US, 799, 1 << 20)
    assert payload == oversized_payload(TIME_US, 799, 1 << 20)  # the same position, same bytes
    assert payload != oversized_payload(TIME_US, 1599, 1 << 20)
    event = orjson.loads(payload)
    assert event["time_us"] == TIME_US
    assert event["commit"]["collection"] == "app.bsky.feed.post"
    assert 1 << 20 <= len(payload) < (1 << 20) + 1024
    assert len(zstandard.ZstdCompressor(level=3).compress(payload)) > 0.7 * len(payload)


@pytest.mark.parametrize("depth", NESTING_DEPTHS)
def test_deep_payloads_nest_past_the_json_limits(depth: int) -> None:
    payload = deep_payload(TIME_US, 399, depth)
    assert payload.count(b'{"v":') == depth
    if depth > 1024:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(payload)
    else:
        event = orjson.loads(payload)  # decodes, but cannot be encoded again
        assert event["commit"]["collection"] == DEEP_COLLECTION
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(event["commit"]["record"])


def test_positioned_faults_follow_every_nth_position() -> None:
    faults = PositionedFaults(
        {BOMB: 5, OVERSIZED: 0, DEEP: 2}, bomb_bytes=1 << 20, oversized_bytes=4096
    )
    assert faults
    assert [p for p in range(12) if faults.after(p)] == [1, 3, 4, 5, 7, 9, 11]
    assert faults.after(9) == [BOMB, DEEP]
    assert not PositionedFaults.from_settings(ReplaySettings())


def test_positioned_frames_are_sent_as_the_connection_sends_events() -> None:
    dictionary = zstandard.train_dictionary(4096, [b'{"did":"did:plc:%d"}' % i for i in range(400)])
    compressor = Compressor(dictionary.as_bytes())
    faults = PositionedFaults(
        {BOMB: 1, OVERSIZED: 1, DEEP: 1}, bomb_bytes=1 << 20, oversized_bytes=4096
    )
    assert faults.frame(BOMB, 0, TIME_US, None) is None  # a bomb needs a compressed connection
    bomb = faults.frame(BOMB, 3, TIME_US, compressor)
    assert bomb is not None
    assert bomb.size == (1 << 20) + 3  # one size per position, so each is a distinct frame
    assert bomb.frame[0] == 0x82  # binary
    plain = faults.frame(DEEP, 0, TIME_US, None)
    assert plain is not None
    assert plain.frame[0] == 0x81  # text
    assert plain.size == len(deep_payload(TIME_US, 0, NESTING_DEPTHS[1]))
    oversized = faults.frame(OVERSIZED, 0, TIME_US, compressor)
    assert oversized is not None
    assert oversized.size >= 4096
    assert faults.frame(OVERSIZED, 0, TIME_US, compressor) is oversized  # kept, not rebuilt
