"""The enrich worker: raw posts -> the model gateway -> ``bluesky.stream.enriched``.

It works in cycles: take a batch from Kafka, score its posts with every model, produce the
enriched records (and dead letters), then make the cycle durable: at-least-once flushes and commits
the offsets; exactly-once writes records and offsets in one Kafka transaction. Nothing is polled
while a cycle is in flight, so rebalances happen between cycles and never split one. While the
gateway is unhealthy (breaker open) the assigned partitions are paused instead of buffering.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as LibKafkaError
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from streampulse.enrich import metrics
from streampulse.enrich.breaker import BreakerState, CircuitBreaker
from streampulse.enrich.gateway import ModelGateway
from streampulse.enrich.records import enriched_record, select_post
from streampulse.enrich.scoring import Scorer
from streampulse.errors import BadRecord, KafkaError
from streampulse.events import encode_dead_letter, now_us
from streampulse.health import Heartbeat, keep_beating
from streampulse.kafka import (
    consumer_config,
    ensure_topics,
    producer_config,
    transactional_producer_config,
)
from streampulse.settings import Settings
from streampulse.telemetry import DEAD_LETTERS
from streampulse.tracing import TRACEPARENT, context_from_traceparent, traceparent_of

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_FLUSH_TIMEOUT_S = 60.0
_LATENCY_SAMPLES = 200_000


@dataclass(frozen=True)
class EnrichSummary:
    consumed: int
    enriched: int
    skipped: int
    dead_letters: int
    seconds: float
    e2e_p50_ms: float
    e2e_p99_ms: float

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()


@dataclass(frozen=True)
class _Post:
    """A post of the cycle: its record, its event, and the span tracing its enrichment."""

    message: Message
    event: dict[str, Any]
    span: Span
    traceparent: str | None  # the span's, else the raw record's (tracing off): sent downstream


@dataclass
class _Cycle:
    enriched: list[Message] = field(default_factory=list)
    skipped: int = 0
    dead_letters: list[str] = field(default_factory=list)


def _headers(message: Message) -> dict[str, str]:
    """A record's headers as text (the last value wins for repeated keys)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        key: value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        for key, value in pairs
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class EnrichWorker:
    def __init__(
        self,
        settings: Settings,
        gateway: ModelGateway | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """``heartbeat``: beaten from this worker's loop and marked ready once it consumes."""
        self._heartbeat = heartbeat
        self._settings = settings
        self._enrich = settings.enrich
        self._kafka = settings.kafka
        self._exactly_once = settings.enrich.delivery == "exactly_once"
        client_id = f"streampulse-enrich-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(
            {
                **consumer_config(
                    settings.kafka, group_id=self._enrich.group_id, client_id=client_id
                ),
                "max.poll.interval.ms": int(max(300.0, 2.5 * self._enrich.retry_budget_s) * 1000),
            }
        )
        self._producer = Producer(
            transactional_producer_config(
                settings.kafka,
                client_id=client_id,
                transactional_id=f"{self._enrich.transactional_id}-{uuid.uuid4().hex}",
            )
            if self._exactly_once
            else producer_config(settings.kafka, client_id=client_id)
        )
        self._gateway = gateway or ModelGateway(settings.enrich)
        self._breaker = CircuitBreaker(
            self._enrich.breaker_failures, self._enrich.breaker_open_s, self._breaker_changed
        )
        self._scorer = Scorer(settings.enrich, self._gateway, self._breaker)
        self._assigned: set[tuple[str, int]] = set()
        self._failure: LibKafkaError | None = None
        self._stopping = False
        self._latencies: list[float] = []
        self._counts = {"consumed": 0, "enriched": 0, "skipped": 0, "dead_letters": 0}

    # -- partitions ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        if self._breaker.state is BreakerState.OPEN:
            consumer.pause(partitions)
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= {(p.topic, p.partition) for p in partitions}
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _breaker_changed(self, state: BreakerState) -> None:
        metrics.BREAKER_STATE.set(int(state))
        assignment = self._consumer.assignment()
        if state is BreakerState.OPEN:
            self._consumer.pause(assignment)
            metrics.PAUSED.set(1)
            log.warning("model gateway unhealthy: breaker open, partitions paused")
        elif state is BreakerState.CLOSED:
            self._consumer.resume(assignment)
            metrics.PAUSED.set(0)
            log.info("model gateway healthy: breaker closed, partitions resumed")

    # -- one cycle ----------------------------------------------------------------------------

    async def _take_batch(self) -> list[Message]:
        """Up to ``batch_posts`` posts' worth of records, waiting at most ``batch_wait_ms``."""
        wanted = self._enrich.batch_posts
        deadline = time.monotonic() + self._enrich.batch_wait_ms / 1000
        batch: list[Message] = []
        while len(batch) < wanted and not self._stopping:
            for message in self._consumer.consume(wanted - len(batch), timeout=0):
                error = message.error()
                if error is None:
                    batch.append(message)
                elif error.fatal():
                    raise KafkaError(f"consumer failed: {error}")
                else:
                    log.warning("consumer: %s", error)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.002 if batch else 0.01)
        # records of partitions revoked while the batch filled belong to their new owner now
        return [m for m in batch if (m.topic(), m.partition()) in self._assigned]

    def _delivered(self, error: LibKafkaError | None, _message: Message) -> None:
        if error is not None and self._failure is None:
            self._failure = error

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Any]) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._delivered
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def _dead_letter(self, message: Message, reason: str, error: str) -> None:
        letter = encode_dead_letter(
            stage="enrich",
            reason=reason,
            error=error,
            original=message.value() or b"",
            original_key=message.key(),
            headers=_headers(message),
            source=f"{message.topic()}/{message.partition()}/{message.offset()}",
        )
        self._produce(self._kafka.dlq_topic, letter, message.key(), [])

    def _start_post(self, message: Message, event: dict[str, Any]) -> _Post:
        """Open the post's ``enrich post`` span, a child of the raw record's traceparent."""
        upstream = _headers(message).get(TRACEPARENT)
        span = tracer.start_span(
            "enrich post",
            context=context_from_traceparent(upstream),
            kind=SpanKind.CONSUMER,
            attributes={
                "streampulse.event_id": event["event_id"],
                "streampulse.did": event["did"],
                "messaging.destination.name": message.topic() or "",
                "messaging.destination.partition.id": str(message.partition()),
                "messaging.kafka.offset": message.offset() or 0,
            },
        )
        return _Post(message, event, span, traceparent_of(span) or upstream)

    def _log_unscored(self, unscored: list[tuple[_Post, str]]) -> None:
        """One warning a cycle, in the first unscored post's span (the log names its trace)."""
        post, failure = unscored[0]
        with trace.use_span(post.span):
            log.warning(
                "%d posts unscored, dead-lettered; first %s: %s",
                len(unscored),
                post.event["event_id"],
                failure,
            )

    async def _process(self, batch: list[Message]) -> _Cycle:
        """Score and produce; says what became of each record (counted once durable)."""
        cycle = _Cycle()
        posts: list[_Post] = []
        for message in batch:
            try:
                event = select_post(message.value())
            except BadRecord as exc:
                self._dead_letter(message, exc.reason, str(exc))
                cycle.dead_letters.append(exc.reason)
                continue
            if event is None:
                cycle.skipped += 1
            else:
                posts.append(self._start_post(message, event))
        if not posts:
            return cycle
        try:
            scored = await self._scorer.score(
                [post.event["text"] for post in posts], [post.traceparent for post in posts]
            )
            stamp = now_us()
            unscored: list[tuple[_Post, str]] = []
            for index, post in enumerate(posts):
                failure = scored.failures.get(index)
                if failure is not None:
                    post.span.set_status(Status(StatusCode.ERROR, failure))
                    self._dead_letter(post.message, "unscored", failure)
                    cycle.dead_letters.append("unscored")
                    unscored.append((post, failure))
                    continue
                value = enriched_record(
                    post.event, scored.predictions[index], self._gateway.versions, stamp
                )
                headers = [(TRACEPARENT, post.traceparent.encode())] if post.traceparent else []
                self._produce(self._kafka.enriched_topic, value, post.message.key(), headers)
                cycle.enriched.append(post.message)
            if unscored:
                self._log_unscored(unscored)
        finally:
            for post in posts:
                post.span.end()
        return cycle

    def _offsets(self, batch: list[Message]) -> list[TopicPartition]:
        newest: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic() or "", message.partition() or 0)
            newest[key] = max(newest.get(key, -1), (message.offset() or 0) + 1)
        return [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in newest.items()
        ]

    def _rewind(self, batch: list[Message]) -> None:
        """Seek back to a failed batch's first records, so they are read again."""
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic() or "", message.partition() or 0)
            first[key] = min(first.get(key, 1 << 62), message.offset() or 0)
        for (topic, partition), offset in first.items():
            if (topic, partition) in self._assigned:
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def _commit_at_least_once(self, batch: list[Message]) -> None:
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if self._failure is not None or remaining:
            raise KafkaError(f"enriched records not acknowledged: {self._failure or remaining}")
        self._consumer.commit(offsets=self._offsets(batch), asynchronous=False)

    def _commit_transaction(self, batch: list[Message]) -> bool:
        """Commit records and offsets atomically; False (and rewound) if it had to abort."""
        try:
            self._producer.send_offsets_to_transaction(
                self._offsets(batch), self._consumer.consumer_group_metadata()
            )
            self._producer.commit_transaction()
        except KafkaException as exc:
            error: LibKafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise KafkaError(f"transaction failed: {error}") from exc
            log.warning("aborting transaction: %s", error)
            self._producer.abort_transaction()
            self._rewind(batch)
            return False
        return True

    async def _cycle(self) -> int:
        batch = await self._take_batch()
        if not batch:
            return 0
        started = time.perf_counter()
        if self._exactly_once:
            self._producer.begin_transaction()
        cycle = await self._process(batch)
        if self._exactly_once:
            if not self._commit_transaction(batch):
                return len(batch)  # aborted and rewound: the records come again
        else:
            self._commit_at_least_once(batch)
        self._record(batch, cycle, time.perf_counter() - started)
        return len(batch)

    def _record(self, batch: list[Message], cycle: _Cycle, seconds: float) -> None:
        """Count a cycle once it is durable."""
        done_ms = time.time() * 1000
        for message in cycle.enriched:
            latency = (done_ms - message.timestamp()[1]) / 1000
            metrics.END_TO_END.observe(latency)
            if len(self._latencies) < _LATENCY_SAMPLES:
                self._latencies.append(latency)
        for reason in cycle.dead_letters:
            DEAD_LETTERS.labels("enrich", reason).inc()
        self._counts["consumed"] += len(batch)
        self._counts["enriched"] += len(cycle.enriched)
        self._counts["skipped"] += cycle.skipped
        self._counts["dead_letters"] += len(cycle.dead_letters)
        metrics.CONSUMED.labels("enriched").inc(len(cycle.enriched))
        metrics.CONSUMED.labels("skipped").inc(cycle.skipped)
        metrics.CONSUMED.labels("dead_letter").inc(len(cycle.dead_letters))
        metrics.ENRICHED.inc(len(cycle.enriched))
        metrics.CYCLE_SECONDS.observe(seconds)

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the cycle in flight, make it durable, then return from ``run``."""
        self._stopping = True

    async def run(self, *, handle_signals: bool = True) -> EnrichSummary:
        started = time.monotonic()
        ensure_topics(
            self._kafka, [self._kafka.raw_topic, self._kafka.enriched_topic, self._kafka.dlq_topic]
        )
        if self._exactly_once:
            self._producer.init_transactions(30)
        self._consumer.subscribe(
            [self._kafka.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        beating = None
        if self._heartbeat is not None:
            beating = asyncio.create_task(keep_beating(self._heartbeat))
            self._heartbeat.mark_ready()
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                if await self._cycle():
                    idle_since = time.monotonic()
                elif (
                    self._enrich.stop_when_idle_s
                    and self._counts["consumed"]
                    and time.monotonic() - idle_since > self._enrich.stop_when_idle_s
                ):
                    break
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            if beating is not None:
                beating.cancel()
            self._producer.flush(_FLUSH_TIMEOUT_S)
            self._consumer.close()
            await self._gateway.aclose()
        return EnrichSummary(
            **self._counts,
            seconds=round(time.monotonic() - started, 3),
            e2e_p50_ms=round(_percentile(self._latencies, 0.5) * 1000, 1),
            e2e_p99_ms=round(_percentile(self._latencies, 0.99) * 1000, 1),
        )
