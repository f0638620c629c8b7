"""Rows of the aggregate tables, as the Flink job writes them, for the dashboard's tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

POST = "app.bsky.feed.post"


def volume_row(at: datetime, lang: str, creates: int, collection: str = POST) -> dict[str, Any]:
    """A ``volume_per_minute`` row: ``creates`` creates and one delete by one author."""
    return {
        "window_start": at,
        "collection": collection,
        "lang": lang,
        "events": creates + 1,
        "creates": creates,
        "deletes": 1,
        "authors": 1,
    }


def toxicity_row(
    at: datetime, lang: str, posts: int, toxic: int, mean: float, p95: float
) -> dict[str, Any]:
    """A ``toxicity_per_minute`` row."""
    return {
        "window_start": at,
        "lang": lang,
        "posts": posts,
        "toxic_posts": toxic,
        "mean_toxicity": mean,
        "p95_toxicity": p95,
    }
