"""The exception tree of the data plane.

    StreamPulseError
    ├── BadRecord            one record is unusable: it becomes a dead letter, the stream goes on
    │   └── MalformedEvent   a Jetstream frame that cannot be decoded or normalized
    └── InfrastructureError  a dependency failed: the process stops loudly and resumes from the log
        ├── KafkaError       the broker refused or lost a write, or cannot be reached
        ├── LauncherError    a local engine (Kafka, ...) could not be obtained or started
        └── LakehouseError   the Paimon warehouse cannot be read, or a query over it failed
            └── TrinoQueryError  Trino refused or failed a query (its own message and name)

Library errors are translated into these at one boundary, with ``raise ... from exc``.
"""

from __future__ import annotations


class StreamPulseError(Exception):
    """Base of every error the package raises on purpose."""


class BadRecord(StreamPulseError):
    """One record cannot be processed; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class MalformedEvent(BadRecord):
    """A Jetstream frame that is not a valid event (bad bytes, bad JSON, missing fields)."""


class InfrastructureError(StreamPulseError):
    """A dependency failed; the process cannot go on correctly and must stop."""


class KafkaError(InfrastructureError):
    """Kafka refused or lost a write, or cannot be reached."""


class LauncherError(InfrastructureError):
    """A local engine could not be obtained, built or started."""


class LakehouseError(InfrastructureError):
    """The Paimon warehouse cannot be read, or a SQL query over its tables failed."""


class TrinoQueryError(LakehouseError):
    """Trino answered a query with an error: bad SQL, a missing table, a failed read.

    ``name`` is Trino's error name (``SYNTAX_ERROR``, ``TABLE_NOT_FOUND``, ...) and ``kind`` its
    error type (``USER_ERROR``, ``INTERNAL_ERROR``, ...); the message is Trino's own.
    """

    def __init__(self, message: str, name: str = "", kind: str = "") -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"{name}: {message}" if name else message)
