"""What a cycle commits and where a rewind seeks, and the dead letter of a raw record."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import Message

from streampulse.enrich.committing import dead_letter, first_offsets, headers_of, offsets_after
from streampulse.events import decode_dead_letter

pytestmark = pytest.mark.unit


class FakeMessage:
    def __init__(
        self,
        partition: int,
        offset: int,
        value: bytes | None = b"{}",
        headers: Any = None,
        topic: str = "raw",
    ) -> None:
        self._p, self._o, self._v, self._h, self._t = partition, offset, value, headers, topic

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"did:plc:a"

    def headers(self) -> Any:
        return self._h


def batch(*positions: tuple[int, int]) -> list[Message]:
    return [cast(Message, FakeMessage(p, o)) for p, o in positions]


def test_offsets_after_a_batch_are_each_partitions_newest_plus_one() -> None:
    committed = offsets_after(batch((0, 7), (1, 3), (0, 9), (0, 8), (1, 4)))
    assert sorted((tp.topic, tp.partition, tp.offset) for tp in committed) == [
        ("raw", 0, 10),
        ("raw", 1, 5),
    ]


def test_a_rewind_seeks_each_partition_to_its_oldest_record_of_the_batch() -> None:
    seeks = first_offsets(batch((2, 40), (2, 38), (0, 0), (2, 39)))
    assert sorted((tp.partition, tp.offset) for tp in seeks) == [(0, 0), (2, 38)]


@pytest.mark.parametrize(
    "headers",
    [[("traceparent", b"00-x-y-01"), ("k", None)], {"traceparent": b"00-x-y-01", "k": None}],
)
def test_headers_as_text_from_either_shape(headers: Any) -> None:
    message = cast(Message, FakeMessage(0, 0, headers=headers))
    assert headers_of(message) == {"traceparent": "00-x-y-01", "k": ""}


def test_a_dead_letter_keeps_the_original_bytes_key_headers_and_source() -> None:
    original = b'{"event_id": "e1", "text": "\xff"}'
    message = cast(Message, FakeMessage(1, 42, original, [("traceparent", b"tp")]))
    output = dead_letter(message, "unscored", "toxicity unavailable: timeout", "dlq")
    assert output.topic == "dlq"
    assert output.key == b"did:plc:a"
    letter, kept = decode_dead_letter(output.value)
    assert kept == original
    assert letter["stage"] == "enrich"
    assert letter["reason"] == "unscored"
    assert letter["error"] == "toxicity unavailable: timeout"
    assert letter["source"] == "raw/1/42"
    assert letter["headers"] == {"traceparent": "tp"}
    assert letter["original_key"] == "did:plc:a"
