"""Log records carry the active span's trace id, in text and in JSON."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from streampulse.logs import TraceContextFilter, log_handler

pytestmark = pytest.mark.unit


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("streampulse.test_logs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger
    logger.handlers.clear()


def _capture(logger: logging.Logger, fmt: str) -> io.StringIO:
    stream = io.StringIO()
    handler = log_handler(fmt)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger.handlers[:] = [handler]
    return stream


def _span_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_the_filter_adds_ids_only_while_a_span_is_active() -> None:
    span = TracerProvider().get_tracer("t").start_span("work")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    TraceContextFilter().filter(record)
    assert record.trace_id == record.span_id == ""
    with trace.use_span(span, end_on_exit=True):
        TraceContextFilter().filter(record)
    assert (record.trace_id, record.span_id) == _span_ids(span)


def test_text_logs_carry_the_trace_id(logger: logging.Logger) -> None:
    stream = _capture(logger, "text")
    logger.info("outside")
    span = TracerProvider().get_tracer("t").start_span("work")
    with trace.use_span(span, end_on_exit=True):
        logger.warning("inside %s", "a span")
    outside, inside = stream.getvalue().splitlines()
    trace_id, span_id = _span_ids(span)
    assert "trace_id" not in outside
    assert inside.endswith(f"inside a span trace_id={trace_id} span_id={span_id}")


def test_json_logs_carry_the_trace_id(logger: logging.Logger) -> None:
    stream = _capture(logger, "json")
    logger.info("outside")
    span = TracerProvider().get_tracer("t").start_span("work")
    with trace.use_span(span, end_on_exit=True):
        logger.error("inside")
    outside, inside = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert (inside["trace_id"], inside["span_id"]) == _span_ids(span)
    assert inside["msg"] == "inside"
    assert inside["level"] == "ERROR"


def test_an_unsampled_span_still_names_its_trace(logger: logging.Logger) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF  # noqa: PLC0415

    stream = _capture(logger, "json")
    span = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_span("work")
    assert not span.is_recording()
    with trace.use_span(span):
        logger.info("inside")
    assert orjson.loads(stream.getvalue())["trace_id"] == _span_ids(span)[0]
