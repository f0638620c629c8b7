"""The replay server's streams, filters, pacing and faults, without a network."""

from __future__ import annotations

import collections
import csv
import itertools
from pathlib import Path

import orjson
import pytest

from streampulse.events import FOLLOW, LIKE, POST
from streampulse.replay import Filters, Stream, build_stream
from streampulse.replay.faults import KINDS, malformed_payload
from streampulse.replay.frames import ws_frame
from streampulse.replay.identifiers import decode_tid, encode_tid, is_tid, shift_tid
from streampulse.replay.pacing import FixedRate, Pacer, ProfileRate, make_pacer
from streampulse.replay.protocol import InvalidRequest, parse_client_message, parse_subscribe
from streampulse.replay.sources import load_profile
from streampulse.settings import ReplaySettings, Settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def replay_settings() -> ReplaySettings:
    settings = Settings().replay
    if settings.data_dir is None:
        pytest.fail(
            "STREAMPULSE_REPLAY__DATA_DIR is not set: point it at the Jetstream captures "
            "(the Makefile exports it; e.g. ../shared/data/jetstream)"
        )
    return settings


@pytest.fixture(scope="module")
def synthetic(replay_settings: ReplaySettings) -> Stream:
    """Enough generated events to cycle the whole rate profile once."""
    return build_stream(
        replay_settings.model_copy(update={"stream": "synthetic", "synthetic_events": 22_000})
    )


def _capture_lines(data_dir: Path) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines


def test_recorded_stream_is_every_captured_event_in_stable_time_order(
    replay_settings: ReplaySettings,
) -> None:
    stream = build_stream(replay_settings.model_copy(update={"stream": "recorded"}))
    assert replay_settings.data_dir is not None
    lines = [ln for ln in _capture_lines(replay_settings.data_dir) if b'"time_us"' in ln]
    expected = sorted(lines, key=lambda line: orjson.loads(line)["time_us"])  # stable
    assert [event.raw for event in stream.events] == expected
    assert len(stream.events) == 166  # 152 + 10 + 4; the heartbeat reply is skipped
    assert stream.times == sorted(stream.times)
    assert all(b"heartbeat" not in event.raw for event in stream.events)


def test_synthetic_stream_is_deterministic_by_seed(replay_settings: ReplaySettings) -> None:
    small = replay_settings.model_copy(update={"stream": "synthetic", "synthetic_events": 800})
    first, again = build_stream(small), build_stream(small)
    other = build_stream(small.model_copy(update={"seed": small.seed + 1}))
    assert [e.raw for e in first.events] == [e.raw for e in again.events]
    assert [e.raw for e in first.events] != [e.raw for e in other.events]
    assert len(first.events) == 800


def test_synthetic_times_strictly_increase_and_ids_are_unique(synthetic: Stream) -> None:
    times = synthetic.times
    assert all(a < b for a, b in itertools.pairwise(times))
    ids = [event.event_id() for event in synthetic.events]
    assert len(set(ids)) == len(ids)


def test_mixed_stream_is_recorded_then_synthetic(replay_settings: ReplaySettings) -> None:
    mixed = build_stream(replay_settings.model_copy(update={"synthetic_events": 500}))
    recorded = build_stream(replay_settings.model_copy(update={"stream": "recorded"}))
    count = len(recorded.events)
    assert [e.raw for e in mixed.events[:count]] == [e.raw for e in recorded.events]
    assert len(mixed.events) == count + 500
    assert mixed.events[count].time_us > recorded.events[-1].time_us
    assert mixed.times == sorted(mixed.times)


def test_each_generated_second_has_the_profile_counts(
    replay_settings: ReplaySettings, synthetic: Stream
) -> None:
    assert replay_settings.data_dir is not None
    profile = load_profile(replay_settings.data_dir)
    path = sorted(replay_settings.data_dir.glob("per_second_rates_*.csv"))[0]
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    start = synthetic.events[0].time_us // 1_000_000 * 1_000_000
    assert start == profile.start_us
    per_second: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for event in synthetic.events:
        data = orjson.loads(event.raw)
        if data["kind"] == "commit" and data["commit"]["operation"] == "create":
            per_second[(event.time_us - start) // 1_000_000][event.collection or ""] += 1
    complete = sorted(per_second)[:-1]  # the last second is cut at synthetic_events
    assert len(complete) > len(rows)  # the profile was cycled
    for second in complete:
        row = rows[second % len(rows)]
        counts = per_second[second]
        assert (counts[LIKE], counts[POST], counts[FOLLOW]) == (
            int(row[LIKE]),
            int(row[POST]),
            int(row[FOLLOW]),
        )


def test_synthetic_mix_has_the_rarer_firehose_traffic(synthetic: Stream) -> None:
    kinds = collections.Counter(e.collection or e.kind for e in synthetic.events)
    operations = collections.Counter(
        orjson.loads(e.raw)["commit"]["operation"] for e in synthetic.events if e.kind == "commit"
    )
    for key in ("app.bsky.feed.repost", "app.bsky.graph.block", "identity", "account"):
        assert kinds[key] > 0, key
    assert operations["delete"] > 0
    assert operations["update"] > 0
    assert sum(
        n for k, n in kinds.items() if not k.startswith(("app.bsky.", "identity", "account"))
    )
    by_author = collections.Counter(e.did for e in synthetic.events)
    assert by_author.most_common(1)[0][1] > 20 * len(synthetic.events) / len(by_author)


def _posts(stream: Stream) -> list[dict[str, object]]:
    return [
        orjson.loads(e.raw)["commit"]["record"]
        for e in stream.events
        if e.collection == POST and b'"operation":"create"' in e.raw
    ]


def test_post_facets_index_utf8_bytes_of_the_text(synthetic: Stream) -> None:
    seen = collections.Counter[str]()
    for record in _posts(synthetic):
        text = record["text"]
        assert isinstance(text, str)
        encoded = text.encode()
        for facet in record.get("facets", []):  # type: ignore[attr-defined]
            index = facet["index"]
            piece = encoded[index["byteStart"] : index["byteEnd"]].decode()  # whole characters
            feature = facet["features"][0]
            kind = feature["$type"].rsplit("#", 1)[1]
            seen[kind] += 1
            if kind == "tag":
                assert piece == "#" + feature["tag"]
            elif kind == "mention":
                assert piece.startswith("@")
                assert feature["did"].startswith("did:plc:")
            else:
                assert piece.rstrip(".") in feature["uri"] or piece == feature["uri"]
    assert seen["tag"] > 0
    assert seen["mention"] > 0
    assert seen["link"] > 0


def test_posts_are_multilingual_with_replies_and_embeds(synthetic: Stream) -> None:
    posts = _posts(synthetic)
    langs = collections.Counter(lang for p in posts for lang in p.get("langs", []))  # type: ignore[attr-defined]
    assert {"en", "ja", "ko", "ar", "he", "de"} <= set(langs)
    assert any("langs" not in p for p in posts)
    texts = " ".join(str(p["text"]) for p in posts)
    assert any("\u4e00" <= c <= "\u9fff" for c in texts)  # CJK
    assert any("\u0600" <= c <= "\u06ff" for c in texts)  # Arabic (RTL)
    assert "\u200d" in texts  # emoji ZWJ sequences
    embeds = collections.Counter(p["embed"]["$type"] for p in posts if "embed" in p)  # type: ignore[index]
    assert len(embeds) >= 4
    assert sum("reply" in p for p in posts) > len(posts) // 10


def test_engagement_points_at_posts_of_the_stream(synthetic: Stream) -> None:
    post_uris = {
        f"at://{e.did}/{POST}/{orjson.loads(e.raw)['commit']['rkey']}"
        for e in synthetic.events
        if e.collection == POST
    }
    subjects = [
        orjson.loads(e.raw)["commit"]["record"]["subject"]["uri"]
        for e in synthetic.events
        if e.collection == LIKE and b'"operation":"create"' in e.raw
    ]
    inside = [uri for uri in subjects if uri in post_uris]
    assert len(inside) > 0.8 * len(subjects)
    most_liked = collections.Counter(inside).most_common(1)[0][1]
    assert most_liked >= 20  # a long tail: some posts go viral


def test_loop_cycles_shift_times_and_keep_ids_unique(replay_settings: ReplaySettings) -> None:
    stream = build_stream(replay_settings.model_copy(update={"synthetic_events": 300}))
    first, second = stream.cycle(1), stream.cycle(2)
    period = stream.period_us
    assert [e.time_us for e in first.events] == [t + period for t in stream.times]
    assert first.events[0].time_us > stream.events[-1].time_us
    assert second.events[0].time_us > first.events[-1].time_us
    ids = [e.event_id() for s in (stream, first, second) for e in s.events]
    assert len(set(ids)) == len(ids)
    for event in first.events:
        assert orjson.loads(event.raw)["time_us"] == event.time_us
    # likes of a cycle point at that cycle's posts
    post_uris = {
        f"at://{e.did}/{POST}/{orjson.loads(e.raw)['commit']['rkey']}"
        for e in first.events
        if e.collection == POST
    }
    liked = [
        orjson.loads(e.raw)["commit"]["record"]["subject"]["uri"]
        for e in first.events
        if e.collection == LIKE and b'"operation":"create"' in e.raw
    ]
    assert sum(uri in post_uris for uri in liked) > len(liked) // 2


def test_loop_shift_moves_every_tid_by_the_cycle_offset(replay_settings: ReplaySettings) -> None:
    stream = build_stream(replay_settings.model_copy(update={"synthetic_events": 300}))
    offset = 3 * stream.period_us
    for event, shifted in zip(stream.events, stream.cycle(3).events, strict=True):
        before, after = orjson.loads(event.raw), orjson.loads(shifted.raw)
        assert after["time_us"] == before["time_us"] + offset
        if event.kind == "commit":
            for key in ("rev", "rkey"):
                assert after["commit"][key] == shift_tid(before["commit"][key], offset)
            if is_tid(before["commit"]["rkey"]):
                assert decode_tid(after["commit"]["rkey"])[0] == (
                    decode_tid(before["commit"]["rkey"])[0] + offset
                )
        else:
            body = before[event.kind]
            assert after[event.kind]["seq"] == body["seq"] + 3 * 10**12
    assert encode_tid(*decode_tid("3mptbypluud2a")) == "3mptbypluud2a"


def test_locate_finds_the_first_event_at_or_after_the_cursor(
    replay_settings: ReplaySettings,
) -> None:
    stream = build_stream(replay_settings.model_copy(update={"synthetic_events": 200}))
    times = stream.times
    assert stream.locate(None, loop=False) == (0, 0)
    assert stream.locate(times[10], loop=False) == (0, 10)
    assert stream.locate(times[10] + 1, loop=False) == (0, 11)
    assert stream.locate(times[-1] + 1, loop=False) == (0, len(times))
    assert stream.locate(times[-1] + 1, loop=True) == (1, 0)
    assert stream.locate(times[5] + 2 * stream.period_us, loop=True) == (2, 5)
    assert stream.locate(0, loop=False) == (0, 0)


@pytest.mark.parametrize(
    ("wanted", "collection", "expected"),
    [
        (["app.bsky.graph.*"], "app.bsky.graph.follow", True),
        (["app.bsky.graph.*"], "app.bsky.graphite.x", False),
        (["app.bsky.graph.*"], "app.bsky.feed.like", False),
        (["app.bsky.feed.post"], "app.bsky.feed.post", True),
        (["app.bsky.feed.post"], "app.bsky.feed.postgate", False),
        (["app.bsky.feed.post"], None, True),  # identity and account events always pass
        ([], "anything.at.all", True),
    ],
)
def test_collection_filters(wanted: list[str], collection: str | None, expected: bool) -> None:
    assert Filters.create(wanted).accepts("did:plc:a", collection, 10) is expected


def test_did_and_size_filters() -> None:
    filters = Filters.create([], ["did:plc:a"], 100)
    assert filters.accepts("did:plc:a", LIKE, 100)
    assert not filters.accepts("did:plc:a", LIKE, 101)
    assert not filters.accepts("did:plc:b", LIKE, 10)
    assert Filters.create(max_message_bytes=-5).everything  # negative means no limit


def test_parse_subscribe_reads_repeated_parameters() -> None:
    request = parse_subscribe(
        "/subscribe?wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.graph.*"
        "&wantedDids=did:plc:a&cursor=1725911162329308&compress=true&requireHello=true"
        "&maxMessageSizeBytes=1000",
        {},
    )
    assert request.filters.collections == {"app.bsky.feed.post"}
    assert request.filters.prefixes == ("app.bsky.graph.",)
    assert request.filters.dids == {"did:plc:a"}
    assert request.filters.max_message_bytes == 1000
    assert (request.cursor, request.compress, request.require_hello) == (
        1725911162329308,
        True,
        True,
    )
    plain = parse_subscribe("/subscribe", {"Socket-Encoding": "zstd"})
    assert plain.compress
    assert plain.cursor is None
    assert plain.filters.everything


@pytest.mark.parametrize(
    "target",
    [
        "/subscribe?cursor=yesterday",
        "/subscribe?maxMessageSizeBytes=big",
        "/subscribe?wantedCollections=not a nsid",
        "/subscribe?wantedDids=alice",
        "/firehose",
        "/subscribe?" + "&".join(f"wantedCollections=a.b.c{i}" for i in range(101)),
    ],
)
def test_parse_subscribe_rejects_bad_requests(target: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_subscribe(target, {})


def test_options_update_replaces_filters() -> None:
    message = orjson.dumps(
        {
            "type": "options_update",
            "payload": {"wantedCollections": ["app.bsky.feed.*"], "maxMessageSizeBytes": 500},
        }
    )
    filters = parse_client_message(message)
    assert filters.prefixes == ("app.bsky.feed.",)
    assert filters.max_message_bytes == 500
    assert not filters.dids


@pytest.mark.parametrize(
    "message",
    [
        b"not json",
        b"[]",
        b'{"type":"hello"}',
        b'{"type":"options_update","payload":[]}',
        b'{"type":"options_update","payload":{"wantedCollections":"app.bsky.feed.post"}}',
        b'{"type":"options_update","payload":{"maxMessageSizeBytes":"9"}}',
        b'{"type":"options_update","payload":{"wantedDids":["bob"]}}',
    ],
)
def test_invalid_client_messages_are_refused(message: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_client_message(message)


def test_profile_pacing_sends_each_second_its_count(replay_settings: ReplaySettings) -> None:
    assert replay_settings.data_dir is not None
    profile = load_profile(replay_settings.data_dir)
    pacer = ProfileRate(profile)
    first, second = profile.seconds[0].total, profile.seconds[1].total
    assert pacer.due(0.0) == 1
    assert pacer.due(0.999999) == first
    assert pacer.due(1.0) == first + 1
    assert pacer.due(1.999999) == first + second
    cycle = sum(s.total for s in profile.seconds)
    assert pacer.due(len(profile.seconds) + 0.0) == cycle + 1  # the profile repeats
    for position in (0, 1, first - 1, first, cycle - 1, cycle, cycle + first + 3):
        offset = pacer.offset_of(position)
        assert pacer.due(offset + 1e-9) >= position + 1
        assert pacer.due(offset - 1e-6) <= position + 1


def test_fixed_and_max_pacing() -> None:
    fixed = make_pacer("250", None)
    assert isinstance(fixed, FixedRate)
    assert fixed.due(1.0) == 251
    assert fixed.offset_of(250) == pytest.approx(1.0)
    unlimited = make_pacer("max", None)
    assert type(unlimited) is Pacer
    assert unlimited.due(0.0) > 10**12
    for bad in ("fast", "0", "-3", "inf"):
        with pytest.raises(ValueError, match="rate"):
            make_pacer(bad, None)


def test_malformed_payloads_are_each_broken_their_own_way() -> None:
    payloads = {kind: malformed_payload(kind, 1_783_175_888_000_000) for kind in KINDS}
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payloads["invalid_json"])
    with pytest.raises(UnicodeDecodeError):
        payloads["invalid_utf8"].decode()
    missing = orjson.loads(payloads["missing_fields"])
    assert "did" not in missing
    assert "time_us" not in missing
    wrong = orjson.loads(payloads["wrong_types"])
    assert isinstance(wrong["time_us"], str)
    assert not isinstance(wrong["did"], str)
    assert orjson.loads(payloads["unknown_kind"])["kind"] not in ("commit", "identity", "account")
    huge = orjson.loads(payloads["huge_text"])
    assert len(huge["commit"]["record"]["text"]) > 3000


@pytest.mark.parametrize(("size", "header"), [(5, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_ws_frame_header_lengths(size: int, header: int) -> None:
    frame = ws_frame(b"x" * size, text=True)
    assert len(frame) == size + header
    assert frame[0] == 0x81
    assert ws_frame(b"", text=False)[0] == 0x82


def test_a_rebased_stream_starts_now_with_the_gaps_between_captures_closed(
    replay_settings: ReplaySettings,
) -> None:
    now_us = 1_795_720_000_000_000
    settings = replay_settings.model_copy(
        update={"stream": "mixed", "synthetic_events": 500, "rebase_to_now": True}
    )
    stream = build_stream(settings, now_us)
    times = stream.times
    assert now_us - 1_100_000 < times[0] <= now_us  # the first event, within a quantum of now
    assert times == sorted(times)
    recorded = times[:166]
    # the captures span 2024-09 .. 2026-07; rebased, their gaps are a second or so each
    assert recorded[-1] - recorded[0] < 10_000_000
    assert max(b - a for a, b in itertools.pairwise(recorded)) < 2_200_000
    for event in stream.events[:166]:
        record = orjson.loads(event.raw)
        assert record["time_us"] == event.time_us
        rev = record.get("commit", {}).get("rev")
        if rev is not None and is_tid(rev):  # TIDs move with the time, as in a loop cycle
            assert abs(decode_tid(rev)[0] - event.time_us) < 600_000_000
