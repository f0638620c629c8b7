"""Timestamps as the dashboard's JSON carries them: ISO 8601, UTC, whole seconds, with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """A table timestamp (UTC, stored without a zone) or an aware time, as ``...T...Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


def iso_ms(millis: int) -> str:
    """Unix milliseconds as ``...T...Z``."""
    return iso(datetime.fromtimestamp(millis / 1000, UTC)) or ""
