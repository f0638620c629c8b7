"""The enrich worker: raw posts -> the model gateway -> ``bluesky.stream.enriched``.

It works in cycles: take a batch from Kafka, score its posts with every model, then write the
enriched records (and dead letters) and make the cycle durable (``committing``). Nothing is
polled while a cycle is in flight, so rebalances happen between cycles and never split one.

While a cycle waits on an unhealthy gateway (breaker not closed) the assigned partitions are
paused, so nothing is prefetched meanwhile; they are resumed when the breaker closes, and at the
end of the cycle, so the next batch gets its own retry budget. With nothing to score and the
breaker open, the worker probes the gateway itself, so the breaker closes once it is back.

SIGTERM lets the cycle in flight finish for at most ``shutdown_timeout_s``; a cycle still scoring
then is abandoned before it writes anything (its records are read again by the partitions' next
owner), so a hung gateway never holds a stop past its budget.
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
from confluent_kafka import Consumer, Message, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from streampulse.enrich import metrics
from streampulse.enrich.breaker import BreakerState, CircuitBreaker
from streampulse.enrich.committing import Committer, Output, dead_letter, headers_of
from streampulse.enrich.gateway import ModelGateway
from streampulse.enrich.records import enriched_record, select_post
from streampulse.enrich.scoring import ScoredBatch, Scorer
from streampulse.errors import BadRecord, KafkaError
from streampulse.events import now_us
from streampulse.health import Heartbeat, keep_beating
from streampulse.kafka import consumer_config, ensure_topics
from streampulse.settings import Settings
from streampulse.telemetry import DEAD_LETTERS
from streampulse.tracing import TRACEPARENT, context_from_traceparent, traceparent_of

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

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
    outputs: list[Output] = field(default_factory=list)  # written once the batch is scored
    enriched: list[Message] = field(default_factory=list)
    skipped: int = 0
    dead_letters: list[str] = field(default_factory=list)


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
        client_id = f"streampulse-enrich-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(
            consumer_config(
                settings.kafka,
                group_id=self._enrich.group_id,
                client_id=client_id,
                session_timeout_ms=int(self._enrich.session_timeout_s * 1000),
                max_poll_interval_ms=int(max(300.0, 2.5 * self._enrich.retry_budget_s) * 1000),
                prefetch_kbytes=self._enrich.prefetch_kbytes,
            )
        )
        self._committer = Committer(settings, self._consumer, client_id)
        self._gateway = gateway or ModelGateway(settings.enrich)
        self._breaker = CircuitBreaker(
            self._enrich.breaker_failures, self._enrich.breaker_open_s, self._breaker_changed
        )
        self._scorer = Scorer(settings.enrich, self._gateway, self._breaker)
        self._assigned: set[tuple[str, int]] = set()
        self._scoring = False
        self._paused = False
        self._stopping = False
        self._in_flight: asyncio.Future[int] | None = None
        self._abandoned = False
        self._abandon_timer: asyncio.TimerHandle | None = None
        self._latencies: list[float] = []
        self._counts = {"consumed": 0, "enriched": 0, "skipped": 0, "dead_letters": 0}

    # -- partitions ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        if self._paused:
            consumer.pause(partitions)
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _set_paused(self, paused: bool) -> None:
        if paused is self._paused:
            return
        assignment = self._consumer.assignment()
        if paused:
            self._consumer.pause(assignment)
        else:
            self._consumer.resume(assignment)
        self._paused = paused
        metrics.PAUSED.set(int(paused))

    def _breaker_changed(self, state: BreakerState) -> None:
        metrics.BREAKER_STATE.set(int(state))
        if state is BreakerState.OPEN:
            log.warning("model gateway unhealthy: breaker open, partitions paused while scoring")
            if self._scoring:
                self._set_paused(True)
        elif state is BreakerState.CLOSED:
            log.info("model gateway healthy: breaker closed, partitions resumed")
            self._set_paused(False)

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

    def _start_post(self, message: Message, event: dict[str, Any]) -> _Post:
        """Open the post's ``enrich post`` span, a child of the raw record's traceparent."""
        upstream = headers_of(message).get(TRACEPARENT)
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

    async def _score(self, posts: list[_Post]) -> ScoredBatch:
        """Score with every model; the partitions stay paused while the breaker is not closed."""
        self._scoring = True
        if self._breaker.state is not BreakerState.CLOSED:
            self._set_paused(True)
        try:
            return await self._scorer.score(
                [post.event["text"] for post in posts], [post.traceparent for post in posts]
            )
        finally:
            self._scoring = False
            self._set_paused(False)  # the next batch gets a retry budget of its own

    async def _process(self, batch: list[Message]) -> _Cycle:
        """Score, and say what becomes of each record: the outputs to write, the counts."""
        cycle = _Cycle()
        posts: list[_Post] = []
        for message in batch:
            try:
                event = select_post(message.value())
            except BadRecord as exc:
                cycle.outputs.append(
                    dead_letter(message, exc.reason, str(exc), self._kafka.dlq_topic)
                )
                cycle.dead_letters.append(exc.reason)
                continue
            if event is None:
                cycle.skipped += 1
            else:
                posts.append(self._start_post(message, event))
        if not posts:
            return cycle
        try:
            scored = await self._score(posts)
            stamp = now_us()
            unscored: list[tuple[_Post, str]] = []
            for index, post in enumerate(posts):
                failure = scored.failures.get(index)
                if failure is not None:
                    post.span.set_status(Status(StatusCode.ERROR, failure))
                    cycle.outputs.append(
                        dead_letter(post.message, "unscored", failure, self._kafka.dlq_topic)
                    )
                    cycle.dead_letters.append("unscored")
                    unscored.append((post, failure))
                    continue
                value = enriched_record(
                    post.event, scored.predictions[index], self._gateway.versions, stamp
                )
                headers: list[tuple[str, str | bytes | None]] = (
                    [(TRACEPARENT, post.traceparent.encode())] if post.traceparent else []
                )
                cycle.outputs.append(
                    Output(self._kafka.enriched_topic, value, post.message.key(), headers)
                )
                cycle.enriched.append(post.message)
            if unscored:
                self._log_unscored(unscored)
        finally:
            for post in posts:
                post.span.end()
        return cycle

    async def _cycle(self) -> int:
        batch = await self._take_batch()
        if not batch:
            return 0
        started = time.perf_counter()
        cycle = await self._process(batch)
        # from here on nothing awaits: the cycle is written and committed, or the process dies
        if not self._committer.commit(batch, cycle.outputs, self._assigned):
            return len(batch)  # aborted and rewound: the records come again
        self._record(batch, cycle, time.perf_counter() - started)
        return len(batch)

    async def _step(self) -> int:
        """One cycle; with nothing read and the breaker open, a probe of the gateway."""
        consumed = await self._cycle()
        if not consumed and self._breaker.state is not BreakerState.CLOSED:
            await self._scorer.probe()
        return consumed

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
        """Finish the cycle in flight, make it durable, then return from ``run``.

        Called on the worker's loop (the signal handlers are). A cycle not done within
        ``shutdown_timeout_s`` is abandoned uncommitted.
        """
        if self._stopping:
            return
        self._stopping = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not running yet: run() returns at once
        self._abandon_timer = loop.call_later(self._enrich.shutdown_timeout_s, self._abandon)

    def _abandon(self) -> None:
        if self._in_flight is not None and not self._in_flight.done():
            log.warning(
                "stopping: the cycle in flight did not end within %.1f s (shutdown_timeout_s); "
                "abandoned before writing anything, its records are read again after a restart",
                self._enrich.shutdown_timeout_s,
            )
            self._abandoned = True
            self._in_flight.cancel()

    async def _loop(self) -> None:
        idle_since = time.monotonic()
        while not self._stopping:
            self._in_flight = asyncio.ensure_future(self._step())
            try:
                consumed = await self._in_flight
            except asyncio.CancelledError:
                if self._abandoned:
                    return
                raise
            if consumed:
                idle_since = time.monotonic()
            elif (
                self._enrich.stop_when_idle_s
                and self._counts["consumed"]
                and time.monotonic() - idle_since > self._enrich.stop_when_idle_s
            ):
                return

    async def run(self, *, handle_signals: bool = True) -> EnrichSummary:
        started = time.monotonic()
        ensure_topics(
            self._kafka, [self._kafka.raw_topic, self._kafka.enriched_topic, self._kafka.dlq_topic]
        )
        self._committer.start()
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
        try:
            await self._loop()
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            if self._abandon_timer is not None:
                self._abandon_timer.cancel()
            if beating is not None:
                beating.cancel()
            self._committer.close()
            self._consumer.close()
            await self._gateway.aclose()
        return EnrichSummary(
            **self._counts,
            seconds=round(time.monotonic() - started, 3),
            e2e_p50_ms=round(_percentile(self._latencies, 0.5) * 1000, 1),
            e2e_p99_ms=round(_percentile(self._latencies, 0.99) * 1000, 1),
        )
