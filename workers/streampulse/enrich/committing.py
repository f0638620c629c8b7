"""Making a scored cycle durable: its records written, the offsets of its input committed.

- at-least-once: produce, flush (every record acknowledged), then commit the offsets. A crash
  between the two reads the cycle again: duplicates carry the same ``event_id``.
- exactly-once: one Kafka transaction holds the records and the offsets
  (``send_offsets_to_transaction`` with the group's metadata, so a zombie worker is fenced). The
  transaction is opened only once the batch is scored, so it lasts milliseconds and a short
  ``transaction_timeout_s`` bounds how long a crashed worker's open transaction holds up
  read_committed readers. An abortable error aborts it and rewinds the consumer to the batch.

Nothing here awaits: once a cycle starts writing, it finishes (or the process dies) before the
event loop runs anything else, so a cancelled cycle never leaves a transaction half done.

Fault injection (``crash_before_commit_cycle``, for the fault matrix only): in that cycle the
records are written and flushed, then the process SIGKILLs itself before committing.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as LibKafkaError

from streampulse.errors import KafkaError
from streampulse.events import encode_dead_letter
from streampulse.kafka import producer_config, transactional_producer_config
from streampulse.settings import Settings

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Output:
    """One record to write."""

    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]]


def headers_of(message: Message) -> dict[str, str]:
    """A record's headers as text (the last value wins for repeated keys)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        key: value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        for key, value in pairs
    }


def dead_letter(message: Message, reason: str, error: str, topic: str) -> Output:
    """The dead letter of a raw record: its bytes, key and headers, and why (stage enrich)."""
    letter = encode_dead_letter(
        stage="enrich",
        reason=reason,
        error=error,
        original=message.value() or b"",
        original_key=message.key(),
        headers=headers_of(message),
        source=f"{message.topic()}/{message.partition()}/{message.offset()}",
    )
    return Output(topic, letter, message.key(), [])


def offsets_after(batch: list[Message]) -> list[TopicPartition]:
    """The offsets to commit once ``batch`` is durable: each partition's newest + 1."""
    newest: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic() or "", message.partition() or 0)
        newest[key] = max(newest.get(key, -1), (message.offset() or 0) + 1)
    return [TopicPartition(topic, part, offset) for (topic, part), offset in newest.items()]


def first_offsets(batch: list[Message]) -> list[TopicPartition]:
    """Each partition's oldest offset in ``batch``: where to seek to read it again."""
    first: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic() or "", message.partition() or 0)
        first[key] = min(first.get(key, 1 << 62), message.offset() or 0)
    return [TopicPartition(topic, part, offset) for (topic, part), offset in first.items()]


class Committer:
    """The worker's producer, and how a cycle's records and offsets become durable."""

    def __init__(self, settings: Settings, consumer: Consumer, client_id: str) -> None:
        enrich = settings.enrich
        self._consumer = consumer
        self.exactly_once = enrich.delivery == "exactly_once"
        self._producer = Producer(
            transactional_producer_config(
                settings.kafka,
                client_id=client_id,
                transactional_id=f"{enrich.transactional_id}-{uuid.uuid4().hex}",
                transaction_timeout_ms=int(enrich.transaction_timeout_s * 1000),
            )
            if self.exactly_once
            else producer_config(settings.kafka, client_id=client_id)
        )
        self._failure: LibKafkaError | None = None
        self._cycles = 0
        self._crash_at = enrich.crash_before_commit_cycle

    def start(self) -> None:
        if self.exactly_once:
            self._producer.init_transactions(30)

    def _delivered(self, error: LibKafkaError | None, _message: Message) -> None:
        if error is not None and self._failure is None:
            self._failure = error

    def _produce(self, output: Output) -> None:
        while True:
            try:
                self._producer.produce(
                    output.topic,
                    output.value,
                    output.key,
                    headers=output.headers,
                    on_delivery=self._delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def commit(
        self, batch: list[Message], outputs: list[Output], owned: Collection[tuple[str, int]]
    ) -> bool:
        """Write ``outputs`` and commit ``batch``'s offsets; False if aborted (and rewound).

        ``owned``: the partitions still assigned, the only ones a rewind may seek.
        """
        self._cycles += 1
        if self.exactly_once:
            self._producer.begin_transaction()
        for output in outputs:
            self._produce(output)
        if self._crash_at and self._cycles == self._crash_at:
            self._crash()
        if self.exactly_once:
            return self._commit_transaction(batch, owned)
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if self._failure is not None or remaining:
            raise KafkaError(f"enriched records not acknowledged: {self._failure or remaining}")
        self._consumer.commit(offsets=offsets_after(batch), asynchronous=False)
        return True

    def _commit_transaction(self, batch: list[Message], owned: Collection[tuple[str, int]]) -> bool:
        try:
            self._producer.send_offsets_to_transaction(
                offsets_after(batch), self._consumer.consumer_group_metadata()
            )
            self._producer.commit_transaction()
        except KafkaException as exc:
            error: LibKafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise KafkaError(f"transaction failed: {error}") from exc
            log.warning("aborting transaction: %s", error)
            self._producer.abort_transaction()
            for position in first_offsets(batch):
                if (position.topic, position.partition) in owned:
                    self._consumer.seek(position)
            return False
        return True

    def _crash(self) -> None:
        """Fault injection: die between writing a cycle and committing it."""
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        log.warning(
            "fault injection: SIGKILL in cycle %d, its records written (%d unflushed), "
            "not committed",
            self._cycles,
            remaining,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        """Deliver what is queued (nothing is, between cycles, unless a cycle was cut short)."""
        self._producer.flush(_FLUSH_TIMEOUT_S)
