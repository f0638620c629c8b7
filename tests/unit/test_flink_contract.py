"""The enriched JSON the workers produce matches the Flink DDL, field for field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streampulse.enrich.records import ENTITIES, SENTIMENT, TOXICITY, enriched_record
from streampulse.events import NormalizedEvent
from streampulse.ingest.normalizing import normalize
from tests.harness.flink import load_flink_module

pytestmark = pytest.mark.unit

schemas = load_flink_module("streampulse_flink/schemas.py", "streampulse_flink_schemas")

PREDICTIONS: dict[str, dict[str, Any]] = {
    TOXICITY: {"label": "toxic", "score": 0.8, "scores": {"toxic": 0.8, "insult": 0.1}},
    ENTITIES: {"entities": [{"text": "Rust", "label": "ORG", "start": 0, "end": 4, "score": 0.99}]},
    SENTIMENT: {"label": "positive", "score": 0.7},
}
VERSIONS = {TOXICITY: "1", ENTITIES: "2", SENTIMENT: "3"}


def _post_event(data_dir: Path) -> NormalizedEvent:
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if b'"app.bsky.feed.post"' in line and b'"operation":"create"' in line:
                return normalize(line, 1_800_000_000_000_000)
    raise AssertionError("no captured post")


def _matches(value: Any, sql_type: str) -> bool:
    """Whether a JSON value can be read as the Flink SQL type (null fits every type)."""
    if value is None:
        return True
    sql_type = sql_type.strip()
    if sql_type in ("INT", "BIGINT"):
        return type(value) is int
    if sql_type == "DOUBLE":
        return type(value) in (int, float)
    if sql_type == "STRING":
        return type(value) is str
    if sql_type == "BOOLEAN":
        return type(value) is bool
    if sql_type.startswith("ARRAY<"):
        inner = sql_type[len("ARRAY<") : -1]
        return type(value) is list and all(_matches(item, inner) for item in value)
    if sql_type.startswith("MAP<STRING,"):
        inner = sql_type[len("MAP<STRING,") : -1]
        return type(value) is dict and all(_matches(v, inner) for v in value.values())
    if sql_type.startswith("ROW<"):
        fields = _row_fields(sql_type[len("ROW<") : -1])
        return (
            type(value) is dict
            and set(value) == set(fields)
            and all(_matches(value[name], kind) for name, kind in fields.items())
        )
    raise AssertionError(f"type {sql_type} not covered by the contract test")


def _row_fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    depth, start = 0, 0
    for i, char in enumerate(body + ","):
        depth += char == "<"
        depth -= char == ">"
        if char == "," and depth == 0:
            name, kind = body[start:i].strip().split(" ", 1)
            fields[name.strip("`")] = kind
            start = i + 1
    return fields


def test_enriched_record_matches_the_flink_source_ddl(jetstream_data_dir: Path) -> None:
    event = _post_event(jetstream_data_dir)
    record = orjson.loads(enriched_record(dict(event), PREDICTIONS, VERSIONS, 1))
    ddl = dict(schemas.ENRICHED_FIELDS)
    assert set(record) == set(ddl), set(record) ^ set(ddl)
    for name, sql_type in ddl.items():
        assert _matches(record[name], sql_type), (name, record[name], sql_type)


def test_raw_event_matches_the_flink_source_ddl(jetstream_data_dir: Path) -> None:
    event = _post_event(jetstream_data_dir)
    assert set(event) == {name for name, _ in schemas.RAW_FIELDS}
    for name, sql_type in schemas.RAW_FIELDS:
        assert _matches(event[name], sql_type), (name, event[name], sql_type)  # type: ignore[literal-required]


def test_normalized_event_declares_every_raw_column() -> None:
    declared = set(NormalizedEvent.__annotations__)
    assert declared == {name for name, _ in schemas.RAW_FIELDS}


def test_the_job_reads_only_fields_of_the_records() -> None:
    assert {name for name, _ in schemas.RAW_FIELDS} >= schemas.RAW_READ
    assert {name for name, _ in schemas.ENRICHED_FIELDS} >= schemas.ENRICHED_READ
    typed = schemas.read(schemas.ENRICHED_FIELDS, frozenset({"toxicity", "event_id"}))
    assert typed == (
        ("event_id", "STRING"),
        ("toxicity", dict(schemas.ENRICHED_FIELDS)["toxicity"]),
    )
    with pytest.raises(ValueError, match="not in the topic's record"):
        schemas.read(schemas.RAW_FIELDS, frozenset({"event_id", "no_such_field"}))
