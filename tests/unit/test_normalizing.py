"""Normalizing real Jetstream events, and surviving hostile ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampulse.errors import MalformedEvent
from streampulse.events import NormalizedEvent
from streampulse.ingest.normalizing import normalize

pytestmark = pytest.mark.unit

INGESTED_AT = 1_800_000_000_000_000


def _captured_lines(data_dir: Path) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines


def _find(data_dir: Path, needle: str) -> NormalizedEvent:
    for line in _captured_lines(data_dir):
        if needle.encode() in line:
            return normalize(line, INGESTED_AT)
    raise AssertionError(f"no captured event contains {needle!r}")


def test_every_captured_event_normalizes(jetstream_data_dir: Path) -> None:
    lines = _captured_lines(jetstream_data_dir)
    events = [orjson.loads(line) for line in lines]
    real = [line for line, event in zip(lines, events, strict=True) if "time_us" in event]
    assert len(real) >= 166
    normalized = [normalize(line, INGESTED_AT) for line in real]
    assert len({event["event_id"] for event in normalized}) == len(normalized)
    for event, raw in zip(normalized, real, strict=True):
        source = orjson.loads(raw)
        assert event["did"] == source["did"]
        assert event["time_us"] == source["time_us"]
        assert event["kind"] == source["kind"]
        assert set(event) == set(NormalizedEvent.__annotations__)


def test_the_heartbeat_reply_is_not_an_event(jetstream_data_dir: Path) -> None:
    heartbeat = next(line for line in _captured_lines(jetstream_data_dir) if b'"heartbeat"' in line)
    with pytest.raises(MalformedEvent) as caught:
        normalize(heartbeat, INGESTED_AT)
    assert caught.value.reason == "missing_field"


def test_reply_post(jetstream_data_dir: Path) -> None:
    event = _find(jetstream_data_dir, "3mmoojp4cd223")
    assert event == {
        **event,
        "event_id": (
            "did:plc:q235v55g5unth4zjjdpacfdr/app.bsky.feed.post/3mmoojp4cd223@3mmoojpaqkn2z"
        ),
        "time_us": 1779719009157119,
        "kind": "commit",
        "operation": "create",
        "collection": "app.bsky.feed.post",
        "rkey": "3mmoojp4cd223",
        "rev": "3mmoojpaqkn2z",
        "cid": "bafyreicl7rzkxdrm4zz2ehbx52kuk3mvfow6p3gzfys72r5grvskxoswy4",
        "ingested_at_us": INGESTED_AT,
        "text": "Try RSV for a good time !!",
        "langs": ["en"],
        "created_at": "2026-05-25T14:23:28.757Z",
        "reply_root": "at://did:plc:j76trmiofvaxxpvx2vnb2vwf/app.bsky.feed.post/3mmojbrjwbs26",
        "reply_parent": "at://did:plc:j76trmiofvaxxpvx2vnb2vwf/app.bsky.feed.post/3mmojbrjwbs26",
        "embed_type": None,
        "hashtags": [],
        "mentions": [],
        "links": [],
        "subject_uri": None,
        "record_json": None,
    }


def test_post_facets_and_embed(jetstream_data_dir: Path) -> None:
    event = _find(jetstream_data_dir, "3mptbyo7tas2u")
    assert event["hashtags"] == ["talesatwonderworld", "balanwonderworldoc"]
    assert event["links"] == [
        "https://www.tumblr.com/tempo-tales/765681292369166336/"
        "behind-them-timmi-and-wankyu-follow-silently-but?source=share"
    ]
    assert event["embed_type"] == "images"
    assert event["langs"] == ["es", "en"]
    tagged = _find(jetstream_data_dir, "3mptbypfywk2v")
    assert tagged["hashtags"] == ["HowToTellAiToShutUp", "IndieRebellion"]
    assert tagged["text"] is not None
    assert tagged["text"].startswith("#HowToTellAiToShutUp!")


def test_like_subject(jetstream_data_dir: Path) -> None:
    event = _find(jetstream_data_dir, "3mptbyplj5d2a")
    assert event["collection"] == "app.bsky.feed.like"
    assert event["subject_uri"] == (
        "at://did:plc:r2zybk6op3ymzpz6jhqpkoy5/app.bsky.feed.post/3mpsjbtci2c2o"
    )
    assert event["text"] is None
    assert event["created_at"] == "2026-07-04T14:38:08.999Z"


def test_follow_and_block_subjects(jetstream_data_dir: Path) -> None:
    lines = _captured_lines(jetstream_data_dir)
    for collection in ("app.bsky.graph.follow", "app.bsky.graph.block"):
        line = next(x for x in lines if collection.encode() in x and b'"create"' in x)
        event = normalize(line, INGESTED_AT)
        subject = orjson.loads(line)["commit"]["record"]["subject"]
        assert event["subject_did"] == subject
        assert event["subject_did"].startswith("did:")


def test_delete_carries_no_record(jetstream_data_dir: Path) -> None:
    event = _find(jetstream_data_dir, "3mpt73z3ejc2p")
    assert event["operation"] == "delete"
    assert event["collection"] == "app.bsky.feed.post"
    assert event["event_id"] == (
        "did:plc:4smmjsqf6l5jkzczvw6vsrqc/app.bsky.feed.post/3mpt73z3ejc2p@3mptbypuw3t2q"
    )
    assert event["text"] is None
    assert event["cid"] is None
    assert event["record_json"] is None


def test_identity_and_account(jetstream_data_dir: Path) -> None:
    identity = _find(jetstream_data_dir, '"seq":30340180350')
    assert identity["kind"] == "identity"
    assert identity["event_id"] == "did:plc:g4ut2w5755qxi3fe7mfs72p4/identity@30340180350"
    assert identity["collection"] is None
    account = _find(jetstream_data_dir, '"seq":30340180351')
    assert account["kind"] == "account"
    assert account["active"] is True
    assert account["event_id"] == "did:plc:g4ut2w5755qxi3fe7mfs72p4/account@30340180351"
    handle = _find(jetstream_data_dir, "yohenrique.bsky.social")
    assert handle["handle"] == "yohenrique.bsky.social"


def test_unknown_collection_passes_through(jetstream_data_dir: Path) -> None:
    line = next(
        x for x in _captured_lines(jetstream_data_dir) if b"place.stream.broadcast.origin" in x
    )
    event = normalize(line, INGESTED_AT)
    assert event["collection"] == "place.stream.broadcast.origin"
    assert event["operation"] == "update"
    assert event["record_json"] is not None
    assert orjson.loads(event["record_json"]) == orjson.loads(line)["commit"]["record"]
    unknown_delete = _find(jetstream_data_dir, "3mmontn3gnc2e")
    assert unknown_delete["collection"] == "org.hypercerts.claim.activity"
    assert unknown_delete["record_json"] is None


def _nested(depth: int) -> bytes:
    return b'{"v":' * depth + b"0" + b"}" * depth


def _with_record(collection: str, record: bytes) -> bytes:
    """A create commit whose record is the given JSON text (orjson will not encode it deep)."""
    head = (
        b'{"did":"did:plc:abc","time_us":1700000000000000,"kind":"commit","commit":{"rev":"3r",'
        b'"operation":"create","collection":"' + collection.encode() + b'","rkey":"3k",'
        b'"cid":"bafy","record":'
    )
    return head + record + b"}}"


@pytest.mark.parametrize(
    ("depth", "where"),
    [(300, "encoder"), (1000, "encoder"), (1100, "decoder"), (100_000, "decoder")],
)
def test_records_nested_past_the_json_limits_are_too_deep(depth: int, where: str) -> None:
    """orjson decodes at most 1024 levels and encodes at most 254: a record of an unknown
    collection, re-encoded as record_json, fails the encoder; a deeper frame, the decoder."""
    frame = _with_record("org.example.nested", _nested(depth))
    with pytest.raises(MalformedEvent) as caught:
        normalize(frame, INGESTED_AT)
    assert caught.value.reason == "too_deep"
    assert ("re-encoded" in str(caught.value)) == (where == "encoder")


def test_a_deep_post_is_fine_where_nothing_is_re_encoded() -> None:
    record = b'{"text":"deep embed","embed":' + _nested(600) + b"}"
    event = normalize(_with_record("app.bsky.feed.post", record), INGESTED_AT)
    assert event["text"] == "deep embed"
    assert event["record_json"] is None


def test_nesting_within_the_encoder_limit_passes_through() -> None:
    event = normalize(_with_record("org.example.nested", _nested(200)), INGESTED_AT)
    assert event["record_json"] is not None
    assert event["record_json"].count('{"v":') == 200


def _commit(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "did": "did:plc:abc",
        "time_us": 1_700_000_000_000_000,
        "kind": "commit",
        "commit": {
            "rev": "3rev",
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": "3key",
            "record": {"text": "hello", "createdAt": "2026-01-01T00:00:00Z"},
            "cid": "bafy",
        },
    }
    event.update(overrides)
    return event


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b'{"did": "did:plc:a", "time_us": 1, "kind": "commit", "x": "\xc3\x28"}', "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (orjson.dumps({"time_us": 1, "kind": "commit"}), "missing_field"),
        (orjson.dumps(_commit(did=42)), "missing_field"),
        (orjson.dumps(_commit(did="plc:abc")), "bad_did"),
        (orjson.dumps(_commit(time_us="soon")), "wrong_type"),
        (orjson.dumps(_commit(time_us=-5)), "wrong_type"),
        (orjson.dumps(_commit(kind="heartbeat")), "unknown_kind"),
        (orjson.dumps(_commit(kind=None)), "unknown_kind"),
        (orjson.dumps(_commit(commit="nope")), "missing_field"),
        (orjson.dumps(_commit(commit={"operation": "upsert"})), "bad_operation"),
        (orjson.dumps(_commit(commit={"operation": ["create"]})), "bad_operation"),
        (
            orjson.dumps(_commit(commit={**_commit()["commit"], "record": None})),
            "missing_field",
        ),
        (
            orjson.dumps(
                _commit(commit={**_commit()["commit"], "record": {"text": ["not", "text"]}})
            ),
            "wrong_type",
        ),
        (
            orjson.dumps(_commit(commit={**_commit()["commit"], "record": {"text": "x" * 5000}})),
            "oversized_text",
        ),
    ],
)
def test_bad_frames_have_clear_reasons(frame: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        normalize(frame, INGESTED_AT)
    assert caught.value.reason == reason


def test_hostile_text_survives_a_round_trip() -> None:
    text = "a\x00b\x1b[31mred\u202eevil\u202c 👩‍👩‍👧‍👦 🏳️‍🌈 中文 עברית"
    facets = [None, {"features": "x"}, {"features": [{"$type": ["unhashable"]}, 5]}]
    record = {"text": text, "langs": ["he", 7, None], "facets": facets}
    frame = orjson.dumps(_commit(commit={**_commit()["commit"], "record": record}))
    event = normalize(frame, INGESTED_AT)
    assert event["text"] == text
    assert event["langs"] == ["he"]
    assert orjson.loads(orjson.dumps(event))["text"] == text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(frame: bytes) -> None:
    try:
        event = normalize(frame, INGESTED_AT)
    except MalformedEvent as exc:
        assert exc.reason
    else:
        orjson.dumps(event)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    did=json_values | st.just("did:plc:x"),
    time_us=json_values | st.integers(min_value=1, max_value=2**62),
    kind=st.sampled_from(["commit", "identity", "account", "other"]) | json_values,
    commit=json_values
    | st.fixed_dictionaries(
        {
            "rev": json_values,
            "operation": st.sampled_from(["create", "update", "delete"]) | json_values,
            "collection": st.sampled_from(["app.bsky.feed.post", "app.bsky.feed.like"])
            | json_values,
            "rkey": json_values,
            "record": json_values
            | st.fixed_dictionaries({"text": json_values, "facets": json_values}),
        }
    ),
)
def test_wrong_types_and_missing_fields_never_crash(
    did: object, time_us: object, kind: object, commit: object
) -> None:
    frame = orjson.dumps(
        {"did": did, "time_us": time_us, "kind": kind, "commit": commit, "identity": commit}
    )
    try:
        event = normalize(frame, INGESTED_AT)
    except MalformedEvent as exc:
        assert exc.reason
    else:
        assert isinstance(event["did"], str)
        assert isinstance(event["time_us"], int)
        orjson.dumps(event)
