"""Tracing foundations: the JSON-lines span file, providers from settings, traceparent helpers."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from streampulse.enrich.scoring import request_trace_context
from streampulse.settings import Settings, TelemetrySettings
from streampulse.tracing import (
    JsonLinesSpanExporter,
    RootSpans,
    build_tracer_provider,
    context_from_traceparent,
    exports_spans,
    is_sampled,
    links_from_header,
    links_header,
    span_context_of,
    traceparent_of,
)

pytestmark = pytest.mark.unit

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-00"


def _file_provider(path: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return provider


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_the_file_exporter_writes_one_json_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "spans" / "traces.jsonl"  # the directory is created
    provider = _file_provider(path, "streampulse-test")
    tracer = provider.get_tracer("test")
    linked = span_context_of(SAMPLED)
    assert linked is not None
    root = tracer.start_span("ingest post", kind=SpanKind.PRODUCER, attributes={"did": "did:x"})
    child = tracer.start_span(
        "enrich post",
        context=trace.set_span_in_context(root),
        links=[Link(linked)],
        attributes={"langs": ("en", "ja"), "offset": 7},
    )
    child.add_event("retry", {"attempt": 2})
    child.set_status(Status(StatusCode.ERROR, "unscored"))
    child.end()
    root.end()
    provider.shutdown()

    first, second = _lines(path)
    assert first["name"] == "enrich post"
    assert second["name"] == "ingest post"
    assert (
        first["trace_id"] == second["trace_id"] == format(root.get_span_context().trace_id, "032x")
    )
    assert len(first["trace_id"]) == 32
    assert len(first["span_id"]) == 16
    assert first["parent_span_id"] == second["span_id"]
    assert second["parent_span_id"] is None
    assert first["service"] == second["service"] == "streampulse-test"
    assert second["kind"] == "PRODUCER"
    assert first["status"] == "ERROR"
    assert first["status_message"] == "unscored"
    assert first["attributes"] == {"langs": ["en", "ja"], "offset": 7}
    assert second["attributes"] == {"did": "did:x"}
    assert first["links"] == [
        {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    ]
    assert first["events"][0]["name"] == "retry"
    assert first["events"][0]["attributes"] == {"attempt": 2}
    for line in (first, second):
        assert 0 < line["start_ns"] <= line["end_ns"]


def test_processes_sharing_a_file_never_tear_lines(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    providers = [_file_provider(path, f"service-{n}") for n in range(3)]
    for round_ in range(200):
        for provider in providers:
            provider.get_tracer("test").start_span("s", attributes={"pad": "x" * round_}).end()
    for provider in providers:
        provider.shutdown()
    lines = _lines(path)
    assert len(lines) == 600
    assert {line["service"] for line in lines} == {"service-0", "service-1", "service-2"}


def test_an_exporter_after_shutdown_reports_failure(tmp_path: Path) -> None:
    provider = TracerProvider()
    exporter = JsonLinesSpanExporter(tmp_path / "t.jsonl")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("s")
    span.end()
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    assert exporter.export([span]).name == "FAILURE"  # type: ignore[list-item]


def test_nothing_is_set_up_without_a_destination() -> None:
    settings = TelemetrySettings()
    assert not exports_spans(settings)
    assert build_tracer_provider(settings, "streampulse-ingest") is None


def test_a_provider_from_settings_samples_by_trace_id_and_names_the_service(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    settings = TelemetrySettings(traces_file=path, trace_sample_ratio=0.0)
    provider = build_tracer_provider(settings, "streampulse-enrich")
    assert provider is not None
    tracer = provider.get_tracer("t")
    dropped = tracer.start_span("root")
    assert not dropped.is_recording()
    traceparent = traceparent_of(dropped)
    assert traceparent is not None  # unsampled traces still propagate, flagged as not recorded
    assert not is_sampled(traceparent)
    dropped.end()
    # a recorded upstream decision is followed whatever the local ratio
    followed = tracer.start_span("child", context=context_from_traceparent(SAMPLED))
    assert followed.is_recording()
    followed.end()
    provider.shutdown()
    [line] = _lines(path)
    assert line["service"] == "streampulse-enrich"
    assert line["trace_id"] == SAMPLED.split("-")[1]
    assert line["parent_span_id"] == SAMPLED.split("-")[2]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_TELEMETRY__TRACES_FILE", "/tmp/spans.jsonl")
    monkeypatch.setenv("STREAMPULSE_TELEMETRY__OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("STREAMPULSE_TELEMETRY__TRACE_SAMPLE_RATIO", "1")
    telemetry = Settings().telemetry
    assert telemetry.traces_file == Path("/tmp/spans.jsonl")
    assert telemetry.otlp_endpoint == "http://collector:4318"
    assert telemetry.trace_sample_ratio == 1.0


class _Collector(BaseHTTPRequestHandler):
    """Records the OTLP/HTTP requests it receives."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_an_otlp_endpoint_receives_the_spans_over_http() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = TelemetrySettings(
            otlp_endpoint=f"http://127.0.0.1:{server.server_address[1]}/",
            otlp_timeout_s=5,
            trace_sample_ratio=1.0,
        )
        provider = build_tracer_provider(settings, "streampulse-model-server")
        assert provider is not None
        provider.get_tracer("t").start_span("predict toxicity").end()
        provider.shutdown()  # flushes
    finally:
        server.shutdown()
        server.server_close()
    [(path, content_type, body)] = _Collector.received
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert b"predict toxicity" in body
    assert b"streampulse-model-server" in body


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_root_spans_decide_by_trace_id_and_record_only_sampled_traces(
    tmp_path: Path, ratio: float
) -> None:
    path = tmp_path / "t.jsonl"
    settings = TelemetrySettings(traces_file=path, trace_sample_ratio=ratio)
    provider = build_tracer_provider(settings, "streampulse-ingest")
    assert provider is not None
    roots = RootSpans(provider, ratio, "test")
    bound = TraceIdRatioBased.get_bound_for_rate(ratio)
    # a later stage with a different ratio of its own follows the decision carried downstream
    downstream = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0 - ratio))).get_tracer("d")
    recorded: set[str] = set()
    for n in range(400):
        span, traceparent = roots.start("ingest post", SpanKind.PRODUCER, {"n": n}, time.time_ns())
        context = span_context_of(traceparent)
        assert context is not None, traceparent
        sampled = context.trace_id & 0xFFFF_FFFF_FFFF_FFFF < bound  # TraceIdRatioBased's rule
        assert is_sampled(traceparent) is sampled
        assert (span is not None) is sampled
        child = downstream.start_span("enrich post", context=context_from_traceparent(traceparent))
        assert child.is_recording() is sampled
        if span is not None:
            assert span.is_recording(), "the provider's sampler agrees"
            assert traceparent_of(span) == traceparent
            span.end()
            recorded.add(traceparent.split("-")[1])
    provider.shutdown()
    lines = _lines(path) if path.exists() else []
    assert {line["trace_id"] for line in lines} == recorded
    assert all(line["parent_span_id"] is None for line in lines)
    assert len(recorded) == {0.0: 0, 1.0: 400}.get(ratio, len(recorded))
    assert ratio in (0.0, 1.0) or 60 < len(recorded) < 180


def test_root_spans_need_a_provider_from_settings() -> None:
    with pytest.raises(TypeError, match="build_tracer_provider"):
        RootSpans(TracerProvider(), 1.0, "test")


def test_traceparent_round_trip_makes_a_child_in_the_same_trace() -> None:
    tracer = TracerProvider().get_tracer("t")
    parent = tracer.start_span("parent")
    traceparent = traceparent_of(parent)
    assert traceparent is not None
    assert is_sampled(traceparent)
    child = tracer.start_span("child", context=context_from_traceparent(traceparent))
    assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    assert child.parent is not None  # type: ignore[attr-defined]
    assert child.parent.span_id == parent.get_span_context().span_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad", [None, "", "garbage", "00-zz-yy-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"]
)
def test_bad_traceparents_start_a_new_trace(bad: str | None) -> None:
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("root", context=context_from_traceparent(bad))
    assert span.parent is None  # type: ignore[attr-defined]
    if bad:
        assert span_context_of(bad) is None
        assert not is_sampled(bad) or bad.endswith("-01")


def test_links_header_round_trip_skips_malformed_entries_and_caps_the_count() -> None:
    value = links_header([SAMPLED, "junk", UNSAMPLED])
    links = links_from_header(value, limit=10)
    assert [format(link.context.trace_id, "032x") for link in links] == [
        SAMPLED.split("-")[1],
        UNSAMPLED.split("-")[1],
    ]
    assert len(links_from_header(value, limit=1)) == 1
    assert links_from_header(None, limit=10) == []


@pytest.mark.parametrize(
    ("traceparents", "parent", "linked"),
    [
        ([SAMPLED], SAMPLED, []),
        ([UNSAMPLED, SAMPLED, None, SAMPLED], SAMPLED, [SAMPLED]),
        ([None, UNSAMPLED], UNSAMPLED, []),
        ([None, None], None, []),
    ],
)
def test_a_request_is_parented_by_its_first_recorded_post_and_links_the_others(
    traceparents: list[str | None], parent: str | None, linked: list[str]
) -> None:
    assert request_trace_context(traceparents) == (parent, linked)
