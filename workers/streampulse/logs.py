"""Log configuration, done once by each entrypoint: readable text locally, JSON in clusters.

While a span is active (a post being enriched, a model request being served) every record
carries its ``trace_id`` and ``span_id``, so a log line leads to its trace and back.
"""

from __future__ import annotations

import logging
import sys

import orjson
from opentelemetry import trace


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex) of the active span; empty strings without one."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            text += f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", "")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def log_handler(fmt: str) -> logging.Handler:
    """A stderr handler in the given format whose records carry the active trace context."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(TraceContextFilter())
    return handler


def configure_logging(level: str, fmt: str) -> None:
    """Send logs to stderr in the given format; called by entrypoints only."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(fmt)]
    root.setLevel(level)
    # httpx logs every request at INFO: thousands a second in enrich. Metrics count them.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
