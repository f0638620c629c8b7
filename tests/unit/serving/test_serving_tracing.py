"""The model server's spans: a child of the request's traceparent, linked to the other posts."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streampulse.serving import app as serving_app
from streampulse.serving.models import ServedModel
from streampulse.settings import ServingSettings
from streampulse.tracing import TRACE_LINKS_HEADER

from .fakes import EchoModel

pytestmark = pytest.mark.unit

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(serving_app, "tracer", provider.get_tracer("test"))
    return exporter


def _post(headers: dict[str, str], inputs: list[str]) -> int:
    async def main() -> int:
        models: dict[str, ServedModel] = {"echo": EchoModel()}
        settings = ServingSettings(warmup_batches=0)
        async with TestClient(TestServer(serving_app.build_app(models, settings))) as client:
            response = await client.post(
                "/v1/models/echo:predict", json={"inputs": inputs}, headers=headers
            )
            return response.status

    return asyncio.run(main())


def _only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def test_a_predict_span_continues_the_callers_trace_and_links_the_other_posts(
    exporter: InMemorySpanExporter,
) -> None:
    headers = {"traceparent": PARENT, TRACE_LINKS_HEADER: f"{OTHER},not-a-traceparent"}
    assert _post(headers, ["a", "b", "c"]) == 200
    span = _only_span(exporter)
    assert span.name == "predict echo"
    assert span.kind is SpanKind.SERVER
    context = span.get_span_context()
    assert context is not None
    assert format(context.trace_id, "032x") == PARENT.split("-")[1]
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]
    assert [format(link.context.trace_id, "032x") for link in span.links] == [OTHER.split("-")[1]]
    attributes = dict(span.attributes or {})
    assert attributes["streampulse.model"] == "echo"
    assert attributes["streampulse.batch_size"] == 3
    assert attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET


def test_a_request_without_traceparent_starts_its_own_trace(
    exporter: InMemorySpanExporter,
) -> None:
    assert _post({}, ["a"]) == 200
    span = _only_span(exporter)
    assert span.parent is None
    assert span.links == ()


def test_failures_are_recorded_on_the_span(exporter: InMemorySpanExporter) -> None:
    assert _post({"traceparent": PARENT}, ["boom"]) == 500
    span = _only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 500
    assert _post({"traceparent": PARENT}, []) == 400
    rejected = exporter.get_finished_spans()[-1]
    assert rejected.status.status_code is StatusCode.UNSET  # the caller's mistake, not ours
    assert dict(rejected.attributes or {})["http.response.status_code"] == 400
