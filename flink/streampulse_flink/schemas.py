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

# The fields the job reads from each topic. The sources declare only these (typed as above):
# the JSON decoder skips the others without building values for them.
RAW_READ = frozenset({
    "event_id", "did", "time_us", "kind", "operation", "collection", "rkey", "langs",
    "reply_parent", "hashtags", "subject_uri", "subject_did",
})  # fmt: skip
ENRICHED_READ = frozenset({
    "event_id", "did", "time_us", "operation", "text", "langs", "created_at", "reply_root",
    "reply_parent", "embed_type", "hashtags", "mentions", "links", "ingested_at_us",
    "toxicity", "entities", "sentiment", "models", "enriched_at_us",
})  # fmt: skip


def read(fields: tuple[tuple[str, str], ...], names: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The ``fields`` named in ``names``, in contract order; every name must be a field."""
    unknown = names - {name for name, _ in fields}
    if unknown:
        raise ValueError(f"not in the topic's record: {sorted(unknown)}")
    return tuple((name, sql_type) for name, sql_type in fields if name in names)


def columns(fields: tuple[tuple[str, str], ...]) -> str:
    """The fields as DDL column definitions, one per line."""
    return ",\n".join(f"  `{name}` {sql_type}" for name, sql_type in fields)
