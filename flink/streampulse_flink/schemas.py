"""The Flink side of the wire contract: topic record fields and their Flink SQL types.

The workers write these records (``streampulse.events.NormalizedEvent`` on the raw topic,
``streampulse.enrich.records.enriched_record`` on the enriched topic); a contract test checks
that both sides agree field for field. Order is the DDL's column order.
"""

from __future__ import annotations

RAW_FIELDS: tuple[tuple[str, str], ...] = (
    ("schema_version", "INT"),
    ("event_id", "STRING"),
    ("did", "STRING"),
    ("time_us", "BIGINT"),
    ("kind", "STRING"),
    ("operation", "STRING"),
    ("collection", "STRING"),
    ("rkey", "STRING"),
    ("rev", "STRING"),
    ("cid", "STRING"),
    ("ingested_at_us", "BIGINT"),
    ("text", "STRING"),
    ("langs", "ARRAY<STRING>"),
    ("created_at", "STRING"),
    ("reply_root", "STRING"),
    ("reply_parent", "STRING"),
    ("embed_type", "STRING"),
    ("hashtags", "ARRAY<STRING>"),
    ("mentions", "ARRAY<STRING>"),
    ("links", "ARRAY<STRING>"),
    ("subject_uri", "STRING"),
    ("subject_did", "STRING"),
    ("handle", "STRING"),
    ("active", "BOOLEAN"),
    ("status", "STRING"),
    ("record_json", "STRING"),
)

ENRICHMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("toxicity", "ROW<score DOUBLE, labels MAP<STRING, DOUBLE>>"),
    (
        "entities",
        "ARRAY<ROW<`text` STRING, label STRING, `start` INT, `end` INT, score DOUBLE>>",
    ),
    ("sentiment", "ROW<label STRING, score DOUBLE>"),
    ("models", "ARRAY<STRING>"),
    ("enriched_at_us", "BIGINT"),
)

ENRICHED_FIELDS = RAW_FIELDS + ENRICHMENT_FIELDS


def columns(fields: tuple[tuple[str, str], ...]) -> str:
    """The fields as DDL column definitions, one per line."""
    return ",\n".join(f"  `{name}` {sql_type}" for name, sql_type in fields)
