"""The ingest worker: Jetstream frames -> normalized events -> ``bluesky.stream.raw``.

Per-record failures are data: a frame that cannot be decoded or normalized becomes a dead letter
with its original bytes and the reason. Infrastructure failures are loud: when Kafka acknowledges
nothing for the delivery timeout while records are outstanding (or refuses a write), the process
stops at once, without waiting for the rest, and exits non-zero; the next start resumes from the
log (see ``cursors``), so nothing is lost either way. The check runs on a timer too, so a quiet
source cannot hide a dead broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson
from confluent_kafka import KafkaError as LibKafkaError
from confluent_kafka import Message, Producer
from opentelemetry.trace import SpanKind

from streampulse.errors import KafkaError, MalformedEvent
from streampulse.events import POST, NormalizedEvent, encode_dead_letter, now_us
from streampulse.health import Heartbeat, keep_beating
from streampulse.ingest import metrics
from streampulse.ingest.cursors import resume_cursor
from streampulse.ingest.jetstream import JetstreamClient
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics, gapless_producer_config
from streampulse.settings import Settings
from streampulse.telemetry import DEAD_LETTERS
from streampulse.tracing import TRACEPARENT, RootSpans

log = logging.getLogger(__name__)

_POLL_EVERY = 512
_LATENCY_SAMPLES = 100_000
_SAMPLE_EVERY = 4  # acknowledgement latency is observed for one record in this many
_FLUSH_TIMEOUT_S = 30.0
_WATCH_EVERY_S = 0.5  # delivery reports, the stall check and metrics, whatever the traffic

_TRACED_OPERATIONS = ("create", "update")

DeliveryCallback = Callable[[LibKafkaError | None, Message], None]
Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class IngestSummary:
    """What one run of the worker did; printed as JSON when it exits."""

    events: int
    produced: int
    dead_letters: int
    reconnects: int
    reconnect_causes: dict[str, int]  # closed, lost, refused, idle, oversized_frame, ...
    seconds: float
    streaming_seconds: float  # from the first frame to the last acknowledgement
    cpu_seconds: float
    ack_p50_ms: float
    ack_p99_ms: float
    max_rss_mb: float  # the process's peak resident memory

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class IngestWorker:
    """One ingest process. ``run()`` returns when stopped, or raises on infrastructure failure."""

    def __init__(
        self,
        settings: Settings,
        dictionary: bytes | None,
        post_traces: RootSpans | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """``post_traces`` starts each post's trace; None: tracing is off. ``heartbeat`` is
        beaten from this worker's loop and marked ready once it streams."""
        self._heartbeat = heartbeat
        self._settings = settings
        self._kafka = settings.kafka
        self._producer = Producer(
            gapless_producer_config(settings.kafka, client_id="streampulse-ingest")
        )
        self._client = JetstreamClient(
            settings.jetstream, settings.ingest, dictionary, on_reconnect=self._reconnected
        )
        self._start_cursor: int | None = None
        self._newest_time_us: int | None = None
        self._failure: LibKafkaError | None = None
        self._delivery_timeout_s = settings.kafka.delivery_timeout_ms / 1000
        self._acked_at_check = 0  # acknowledgements counted at the last progress
        self._progress_at = time.monotonic()  # when acknowledgements last moved
        self._stopped_by: KafkaError | None = None
        self._callbacks: dict[str, DeliveryCallback] = {}
        self._received_tally = metrics.Tally(metrics.EVENTS_IN)
        self._produced_tally = metrics.Tally(metrics.EVENTS_OUT)
        self._received_bytes = 0
        self._latencies: list[float] = []
        self._rng = random.Random()
        self._events = 0
        self._produced = 0
        self._dead_letters = 0
        self._reconnects = 0
        self._reconnect_causes: dict[str, int] = {}
        self._first_frame_at: float | None = None
        self._max_text_chars = settings.ingest.max_text_chars
        self._stop_after = settings.ingest.stop_after_events
        self._raw_topic = settings.kafka.raw_topic
        self._post_traces = post_traces

    # -- Kafka delivery reports -------------------------------------------------------------

    def _on_delivery(self, collection: str) -> DeliveryCallback:
        """One callback per collection, made once, so the hot path does no label lookups."""
        callback = self._callbacks.get(collection)
        if callback is not None:
            return callback
        count = self._produced_tally.add
        samples = self._latencies
        observe = metrics.ACK_LATENCY.observe

        def delivered(error: LibKafkaError | None, message: Message) -> None:
            if error is not None:
                if self._failure is None:
                    self._failure = error
                return
            self._produced += 1
            count(collection)
            if self._produced % _SAMPLE_EVERY:
                return
            latency = message.latency()
            if latency is not None:
                observe(latency)
                if len(samples) < _LATENCY_SAMPLES:
                    samples.append(latency)
                else:
                    samples[self._rng.randrange(_LATENCY_SAMPLES)] = latency

        self._callbacks[collection] = delivered
        return delivered

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        collection: str,
        headers: Headers | None = None,
    ) -> None:
        callback = self._on_delivery(collection)
        while True:
            try:
                if headers is None:
                    self._producer.produce(topic, value, key, on_delivery=callback)
                else:
                    self._producer.produce(topic, value, key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let the broker catch up
                self._check_delivery()

    def _check_delivery(self) -> None:
        """Raise ``KafkaError`` if Kafka refused a write, or acknowledged nothing for the
        delivery timeout while records are outstanding (librdkafka itself never times out)."""
        if self._failure is not None:
            raise KafkaError(f"Kafka did not acknowledge a write: {self._failure}")
        now = time.monotonic()
        if self._produced != self._acked_at_check or not len(self._producer):
            self._acked_at_check = self._produced
            self._progress_at = now
        elif now - self._progress_at > self._delivery_timeout_s:
            raise KafkaError(
                f"Kafka acknowledged nothing for {now - self._progress_at:.1f}s with "
                f"{len(self._producer)} records outstanding"
            )

    async def _watch_delivery(self, stream: asyncio.Task[None]) -> None:
        """Serve delivery reports, check for a stall and publish metrics on a timer; stop the
        stream on a failure. With a quiet source the hot path's checks would never run."""
        while True:
            await asyncio.sleep(_WATCH_EVERY_S)
            self._producer.poll(0)
            self._publish_metrics()
            try:
                self._check_delivery()
            except KafkaError as exc:
                self._stopped_by = exc
                stream.cancel()
                return

    # -- the stream -------------------------------------------------------------------------

    def _cursor(self) -> int | None:
        if self._newest_time_us is None:
            return self._start_cursor
        return self._newest_time_us - int(self._settings.ingest.cursor_margin_s * 1_000_000)

    def _newest(self) -> int | None:
        return self._newest_time_us

    def _reconnected(self, endpoint: str, cause: str) -> None:
        self._reconnects += 1
        self._reconnect_causes[cause] = self._reconnect_causes.get(cause, 0) + 1
        metrics.RECONNECTS.labels(endpoint, cause).inc()
        metrics.CONNECTED.set(0)

    def _dead_letter(self, data: bytes, error: MalformedEvent) -> None:
        self._dead_letters += 1
        DEAD_LETTERS.labels("ingest", error.reason).inc()
        letter = encode_dead_letter(
            stage="ingest",
            reason=error.reason,
            error=str(error),
            original=data,
            source=self._client.connected_endpoint or "",
        )
        self._produce(self._kafka.dlq_topic, letter, None, "dead_letter")

    def _on_frame(self, data: bytes, wire_bytes: int, error: MalformedEvent | None) -> bool:
        """The per-event hot path: normalize and produce, or dead-letter. False stops."""
        if self._first_frame_at is None:
            self._first_frame_at = time.monotonic()
        self._events += 1
        self._received_bytes += wire_bytes
        if error is not None:
            self._dead_letter(data, error)
        else:
            try:
                event = normalize(data, now_us(), self._max_text_chars)
            except MalformedEvent as exc:
                self._dead_letter(data, exc)
            else:
                time_us = event["time_us"]
                if self._newest_time_us is None or time_us > self._newest_time_us:
                    self._newest_time_us = time_us
                collection = event["collection"] or event["kind"]
                self._received_tally.add(collection)
                if (
                    self._post_traces is not None
                    and collection == POST
                    and event["operation"] in _TRACED_OPERATIONS
                ):
                    self._produce_traced_post(self._post_traces, event)
                else:
                    self._produce(
                        self._raw_topic, orjson.dumps(event), event["did"].encode(), collection
                    )
        if self._events % _POLL_EVERY == 0:
            self._producer.poll(0)
            self._check_delivery()
            self._publish_metrics()
        return not (self._stop_after and self._events >= self._stop_after)

    def _produce_traced_post(self, post_traces: RootSpans, event: NormalizedEvent) -> None:
        """Produce a post as the root of its trace, its traceparent in the record's headers.

        The span runs from the frame's arrival to the record's hand-over to the producer.
        """
        span, traceparent = post_traces.start(
            "ingest post",
            SpanKind.PRODUCER,
            {
                "streampulse.event_id": event["event_id"],
                "streampulse.did": event["did"],
                "streampulse.collection": POST,
                "messaging.destination.name": self._raw_topic,
            },
            event["ingested_at_us"] * 1000,
        )
        headers: Headers = [(TRACEPARENT, traceparent.encode())]
        self._produce(self._raw_topic, orjson.dumps(event), event["did"].encode(), POST, headers)
        if span is not None:
            span.end()

    def _publish_metrics(self) -> None:
        self._received_tally.flush()
        self._produced_tally.flush()
        metrics.BYTES_IN.inc(self._received_bytes)
        self._received_bytes = 0
        metrics.CONNECTED.set(1 if self._client.connected_endpoint else 0)
        if self._newest_time_us is not None:
            metrics.LAG.set(time.time() - self._newest_time_us / 1e6)

    def _finish(self, failure: KafkaError | None) -> None:
        """Flush what is outstanding and raise if Kafka failed. After a failure nothing is
        waited for: the queue is dropped (the next start fetches it again), the exit is prompt."""
        if failure is None:
            remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        else:
            self._producer.purge()
            remaining = 0
        self._publish_metrics()
        metrics.CONNECTED.set(0)
        if failure is not None:
            raise failure
        self._check_delivery()
        if remaining:
            raise KafkaError(f"{remaining} records not acknowledged within {_FLUSH_TIMEOUT_S}s")

    async def run(self, *, handle_signals: bool = True) -> IngestSummary:
        """Stream until SIGTERM/SIGINT (or ``stop_after_events``), then flush and report.

        Raises ``KafkaError`` when Kafka fails; records not yet acknowledged are then dropped
        from the producer's queue without waiting (the next start fetches them again).
        """
        started, cpu_started = time.monotonic(), _cpu_seconds()
        ensure_topics(self._kafka, [self._kafka.raw_topic, self._kafka.dlq_topic])
        self._start_cursor = resume_cursor(
            self._kafka,
            tail_records=self._settings.ingest.cursor_tail_records,
            margin_s=self._settings.ingest.cursor_margin_s,
        )
        if self._start_cursor is None:
            self._start_cursor = self._settings.ingest.start_cursor_us
        task = asyncio.create_task(self._client.stream(self._cursor, self._newest, self._on_frame))
        watcher = asyncio.create_task(self._watch_delivery(task))
        beating = None
        if self._heartbeat is not None:
            beating = asyncio.create_task(keep_beating(self._heartbeat))
            self._heartbeat.mark_ready()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
        failure: KafkaError | None = None
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except KafkaError as exc:
            failure = exc
        finally:
            watcher.cancel()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            if beating is not None:
                beating.cancel()
            self._finish(failure or self._stopped_by)
        finished = time.monotonic()
        return IngestSummary(
            events=self._events,
            produced=self._produced,
            dead_letters=self._dead_letters,
            reconnects=self._reconnects,
            reconnect_causes=dict(self._reconnect_causes),
            seconds=round(finished - started, 3),
            streaming_seconds=round(finished - (self._first_frame_at or finished), 3),
            cpu_seconds=round(_cpu_seconds() - cpu_started, 3),
            ack_p50_ms=round(_percentile(self._latencies, 0.5) * 1000, 2),
            ack_p99_ms=round(_percentile(self._latencies, 0.99) * 1000, 2),
            max_rss_mb=round(_max_rss_mb(), 1),
        )
