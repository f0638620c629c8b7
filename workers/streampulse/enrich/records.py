"""Which raw records are enriched, and the enriched record they become.

The enriched record is the normalized post plus:

- ``toxicity``: ``{"score": p, "labels": {label: p, ...}}``; ``score`` is the ``toxic`` label's
  probability when the model has one, else its highest label probability;
- ``entities``: ``[{"text", "label", "start", "end", "score"}, ...]``, offsets in characters;
- ``sentiment``: ``{"label": "positive" | "neutral" | "negative", "score": p}``;
- ``models``: ``["name@version", ...]`` of every model used; ``enriched_at_us``.

A field whose model is not configured is null.
"""

from __future__ import annotations

from typing import Any

import orjson

from streampulse.errors import BadRecord
from streampulse.events import POST, SCHEMA_VERSION

TOXICITY, ENTITIES, SENTIMENT = "toxicity", "ner", "sentiment"
_REQUIRED = (("event_id", str), ("did", str), ("time_us", int), ("kind", str))


def select_post(value: bytes | None) -> dict[str, Any] | None:
    """The normalized post to enrich, None for records that are not posts with text.

    Raises ``BadRecord`` for values that are not normalized events at all (poison records).
    """
    if value is None:
        raise BadRecord("empty_value", "record without a value")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json", str(exc)) from exc
    if type(event) is not dict:
        raise BadRecord("not_an_object", f"top level is {type(event).__name__}")
    for field, kind in _REQUIRED:
        if type(event.get(field)) is not kind:
            got = type(event.get(field)).__name__
            raise BadRecord("wrong_type", f"{field} must be {kind.__name__}, got {got}")
    if event.get("collection") != POST or event.get("operation") not in ("create", "update"):
        return None
    text = event.get("text")
    if text is None or text == "":
        return None
    if type(text) is not str:
        raise BadRecord("wrong_type", f"text must be a string, got {type(text).__name__}")
    return event


def _toxicity(prediction: dict[str, Any]) -> dict[str, Any]:
    labels: dict[str, float] = prediction.get("scores") or {}
    score = labels.get("toxic", max(labels.values(), default=prediction.get("score", 0.0)))
    return {"score": score, "labels": labels}


def enriched_record(
    event: dict[str, Any],
    predictions: dict[str, dict[str, Any]],
    versions: dict[str, str],
    enriched_at_us: int,
) -> bytes:
    """Serialize the enriched post; ``predictions`` maps model name -> its result."""
    toxicity = predictions.get(TOXICITY)
    entities = predictions.get(ENTITIES)
    sentiment = predictions.get(SENTIMENT)
    record = {
        **event,
        "schema_version": SCHEMA_VERSION,
        "toxicity": _toxicity(toxicity) if toxicity is not None else None,
        "entities": entities.get("entities", []) if entities is not None else None,
        "sentiment": (
            {"label": sentiment["label"], "score": sentiment["score"]}
            if sentiment is not None
            else None
        ),
        "models": [f"{name}@{versions.get(name, 'unknown')}" for name in sorted(predictions)],
        "enriched_at_us": enriched_at_us,
    }
    return orjson.dumps(record)
