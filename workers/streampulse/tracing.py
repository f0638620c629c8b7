"""Distributed tracing: one trace per post across ingest -> Kafka -> enrich -> the model server.

Each process installs one OpenTelemetry tracer provider from ``TelemetrySettings``
(``tracing_for``), named for its stage. The trace context crosses process boundaries as a W3C
``traceparent``: in the Kafka record headers of the raw and enriched topics and in the HTTP
headers of model requests. A model request that carries several posts has one parent (the
``traceparent`` header) and names the other posts' contexts in ``TRACE_LINKS_HEADER``; the model
server links its span to them.

Spans go to an OTLP/HTTP collector, to a JSON-lines file (``JsonLinesSpanExporter``: what local
runs and tests read), or both. With neither configured no provider is installed: the API stays a
no-op, and hot paths skip tracing altogether. ``RootSpans`` starts the root span of each post's
trace at ingest, where an unrecorded trace must cost next to nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from streampulse import __version__
from streampulse.settings import TelemetrySettings

log = logging.getLogger(__name__)

SERVICE_INGEST = "streampulse-ingest"
SERVICE_ENRICH = "streampulse-enrich"
SERVICE_MODEL_SERVER = "streampulse-model-server"

TRACEPARENT = "traceparent"
# Comma-separated traceparents of the other posts a model request carries (sampled ones only).
TRACE_LINKS_HEADER = "x-streampulse-trace-links"

_PROPAGATOR = TraceContextTextMapPropagator()
_EXPORT_DELAY_MS = 1000  # finished spans reach the file or collector within about a second
_QUEUE_SPANS = 8192  # spans waiting for export before new ones are dropped (bounds memory)
_EXPORT_BATCH_SPANS = 512
# flags of a root the sampler dropped, as the SDK writes them (W3C level 2 adds "random trace id")
_DROPPED_ROOT_FLAGS = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line to a file.

    A line holds ``trace_id``, ``span_id``, ``parent_span_id`` (hex; null for a root), ``name``,
    ``kind``, ``service``, ``start_ns``, ``end_ns`` (unix ns), ``status``, ``attributes``,
    ``links`` and ``events``. Each export is one ``write`` to a file opened for appending, so
    several processes can share the file without tearing lines.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(orjson.dumps(span_as_json(span)) + b"\n" for span in spans)
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                log.exception("writing spans to %s failed", self.path)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is written through

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _hex_span_id(span_id: int) -> str:
    return format(span_id, "016x")


def span_as_json(span: ReadableSpan) -> dict[str, Any]:
    """The JSON-lines form of a finished span."""
    context = span.get_span_context()
    if context is None:  # a finished SDK span always has one
        raise ValueError(f"span {span.name!r} has no span context")
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": _hex_span_id(context.span_id),
        "parent_span_id": _hex_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "status_message": span.status.description,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": _hex_span_id(link.context.span_id),
            }
            for link in span.links
        ],
        "events": [
            {
                "name": event.name,
                "time_ns": event.timestamp,
                "attributes": dict(event.attributes or {}),
            }
            for event in span.events
        ],
    }


class _PresetTraceIds(RandomIdGenerator):
    """Random ids, except that the next trace id may be chosen beforehand (by ``RootSpans``)."""

    def __init__(self) -> None:
        self.next_trace_id: int | None = None

    def generate_trace_id(self) -> int:
        trace_id, self.next_trace_id = self.next_trace_id, None
        return trace_id if trace_id is not None else super().generate_trace_id()


class RootSpans:
    """Starts root spans of new traces on a hot path (ingest: one trace per post).

    The sampling decision comes first, on a fresh trace id, by the rule of the provider's
    sampler (``TraceIdRatioBased`` with the same ratio). A dropped trace costs two random numbers
    and its ``traceparent`` (flagged not sampled, so later stages drop it too), not an SDK span;
    a recorded one is an SDK span with that same trace id, which the sampler then records.
    Not thread-safe: one per thread.
    """

    def __init__(self, provider: TracerProvider, sample_ratio: float, instrumentation: str) -> None:
        ids = provider.id_generator
        if not isinstance(ids, _PresetTraceIds):
            raise TypeError("RootSpans needs a provider from build_tracer_provider")
        self._ids = ids
        self._bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        self._tracer = provider.get_tracer(instrumentation)
        self._no_parent = Context()

    def start(
        self, name: str, kind: SpanKind, attributes: Attributes, start_time_ns: int
    ) -> tuple[Span | None, str]:
        """The recorded span (None when dropped) and the ``traceparent`` to send downstream."""
        trace_id = self._ids.generate_trace_id()
        if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT >= self._bound:
            span_id = self._ids.generate_span_id()
            return None, f"00-{trace_id:032x}-{span_id:016x}-{_DROPPED_ROOT_FLAGS:02x}"
        self._ids.next_trace_id = trace_id
        span = self._tracer.start_span(
            name,
            context=self._no_parent,
            kind=kind,
            attributes=attributes,
            start_time=start_time_ns,
        )
        traceparent = traceparent_of(span)
        if traceparent is None:  # an SDK span always has a valid context
            raise RuntimeError(f"span {name!r} has no valid context")
        return span, traceparent


def exports_spans(settings: TelemetrySettings) -> bool:
    """Whether spans go anywhere; when not, tracing is skipped on hot paths."""
    return settings.traces_file is not None or settings.otlp_endpoint is not None


def build_tracer_provider(settings: TelemetrySettings, service: str) -> TracerProvider | None:
    """A provider exporting to the configured destinations; None when there are none."""
    if not exports_spans(settings):
        return None
    resource = Resource(
        {
            "service.name": service,
            "service.version": __version__,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
        resource=resource,
        shutdown_on_exit=False,  # tracing_for shuts it down; no second atexit flush
        id_generator=_PresetTraceIds(),
    )
    exporters: list[SpanExporter] = []
    if settings.traces_file is not None:
        exporters.append(JsonLinesSpanExporter(settings.traces_file))
    if settings.otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,  # protobuf and requests load only when a collector is configured
        )

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        exporters.append(OTLPSpanExporter(endpoint=endpoint, timeout=settings.otlp_timeout_s))
    for exporter in exporters:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=_QUEUE_SPANS,
                schedule_delay_millis=_EXPORT_DELAY_MS,
                max_export_batch_size=_EXPORT_BATCH_SPANS,
            )
        )
    return provider


@contextmanager
def tracing_for(settings: TelemetrySettings, service: str) -> Iterator[TracerProvider | None]:
    """Install the process's tracer provider for the block; flush and close it on the way out.

    Called once per process, by its entrypoint.
    """
    provider = build_tracer_provider(settings, service)
    if provider is None:
        yield None
        return
    trace.set_tracer_provider(provider)
    destinations = [str(settings.traces_file or ""), settings.otlp_endpoint or ""]
    log.info(
        "tracing %s: sample ratio %s, spans to %s",
        service,
        settings.trace_sample_ratio,
        ", ".join(d for d in destinations if d),
    )
    try:
        yield provider
    finally:
        provider.shutdown()


# -- propagation: W3C traceparent through Kafka headers and HTTP ---------------------------------


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` that makes ``span`` the parent downstream; None if invalid."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The remote parent named by ``headers`` (an empty context when there is none or it is bad).

    ``headers`` may be any mapping with ``get``, e.g. aiohttp's case-insensitive request headers.
    """
    return _PROPAGATOR.extract(headers)


def context_from_traceparent(traceparent: str | None) -> Context:
    """The remote parent named by a ``traceparent`` value (empty context for None or bad)."""
    return _PROPAGATOR.extract({TRACEPARENT: traceparent} if traceparent else {})


def span_context_of(traceparent: str) -> SpanContext | None:
    """The remote span context of a ``traceparent``; None when it is malformed."""
    context = trace.get_current_span(context_from_traceparent(traceparent)).get_span_context()
    return context if context.is_valid else None


def is_sampled(traceparent: str) -> bool:
    """Whether a well-formed ``traceparent`` says its trace is recorded."""
    try:
        return bool(int(traceparent[-2:], 16) & 0x01)
    except ValueError:
        return False


def links_header(traceparents: Sequence[str]) -> str:
    """The ``TRACE_LINKS_HEADER`` value naming these contexts."""
    return ",".join(traceparents)


def links_from_header(value: str | None, limit: int) -> list[Link]:
    """Span links to the well-formed contexts of a ``TRACE_LINKS_HEADER`` (at most ``limit``)."""
    if not value:
        return []
    links: list[Link] = []
    for item in value.split(",")[:limit]:
        context = span_context_of(item.strip())
        if context is not None:
            links.append(Link(context))
    return links
