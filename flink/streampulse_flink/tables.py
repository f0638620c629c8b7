"""The Paimon tables (database ``streampulse``): names, keys and storage options.

``enriched_posts`` is append-only. Every aggregate has a primary key: a window's row is written
once when the window closes (author activity: the hour so far, overwritten at each step), and a
post's engagement row is upserted as engagements arrive.

Every table also publishes Iceberg metadata beside the warehouse (``<warehouse>/iceberg``), which
Trino's Iceberg connector reads through an Iceberg REST catalog (docs/local.md, "SQL with
Trino"). Two choices follow from it: times are ``TIMESTAMP(6)`` (Paimon refuses to describe a
``TIMESTAMP(3)`` column in Iceberg metadata, and a job that cannot commit restarts for ever), and
a primary-key table compacts fully at every commit, since Iceberg readers see only the files of
a fully compacted primary-key table.
"""

from __future__ import annotations

CATALOG = "lake"

# Microseconds: the precision Iceberg's timestamp type has (the values are milliseconds).
TS = "TIMESTAMP(6)"

_ICEBERG = {
    # Iceberg metadata files under <warehouse>/iceberg/<database>/<table>, the layout of an
    # Iceberg Hadoop catalog: what the REST catalog in front of Trino serves.
    "metadata.iceberg.storage": "hadoop-catalog",
}

_PARQUET = {
    "file.format": "parquet",
    # No dictionary encoding: the wide columns are nearly unique (ids, URIs, text, times), and
    # building a dictionary for them is work the writer throws away when it falls back to plain
    # encoding; the files are zstd-compressed either way.
    "parquet.enable.dictionary": "false",
}

# Aggregates are small: one bucket each, so a reader sees few files.
_PK_OPTIONS = {
    "bucket": "1",
    **_PARQUET,
    **_ICEBERG,
    "merge-engine": "deduplicate",
    # Readers query the tables' current state (DuckDB, Trino, batch Flink); no changelog files,
    # which also lets the job send upserts without their retractions.
    "changelog-producer": "none",
    # Iceberg metadata lists a primary-key table's files only once they are fully compacted
    # (level 5); an aggregate is one small bucket, so every commit compacts it fully.
    "full-compaction.delta-commits": "1",
}

_APPEND_OPTIONS = {
    "bucket": "4",
    "bucket-key": "did",
    **_PARQUET,
    **_ICEBERG,
    # small-file compaction of the append table, in the writer
    "compaction.min.file-num": "5",
    "compaction.max.file-num": "50",
    "target-file-size": "128 mb",
}

# name -> (columns, primary key, partition keys, options)
TABLES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "enriched_posts": (
        f"""event_id STRING, did STRING, time_us BIGINT, event_time {TS},
        operation STRING, `text` STRING, langs ARRAY<STRING>, created_at STRING,
        reply_root STRING, reply_parent STRING, embed_type STRING, hashtags ARRAY<STRING>,
        mentions ARRAY<STRING>, links ARRAY<STRING>, toxicity DOUBLE,
        toxicity_labels MAP<STRING, DOUBLE>,
        entities ARRAY<ROW<`text` STRING, label STRING, `start` INT, `end` INT, score DOUBLE>>,
        sentiment_label STRING, sentiment_score DOUBLE, `models` ARRAY<STRING>,
        ingested_at_us BIGINT, enriched_at_us BIGINT, is_late BOOLEAN, dt STRING""",
        "",
        "dt",
        _APPEND_OPTIONS,
    ),
    "volume_per_minute": (
        f"""window_start {TS}, collection STRING, lang STRING, events BIGINT,
        creates BIGINT, deletes BIGINT, authors BIGINT""",
        "window_start, collection, lang",
        "",
        _PK_OPTIONS,
    ),
    "toxicity_per_minute": (
        f"""window_start {TS}, lang STRING, posts BIGINT, toxic_posts BIGINT,
        mean_toxicity DOUBLE, p95_toxicity DOUBLE""",
        "window_start, lang",
        "",
        _PK_OPTIONS,
    ),
    "trending_hashtags": (
        f"""window_start {TS}, window_end {TS}, hashtag STRING, posts BIGINT,
        authors BIGINT""",
        "window_start, hashtag",
        "",
        _PK_OPTIONS,
    ),
    "trending_entities": (
        f"""window_start {TS}, window_end {TS}, entity STRING, label STRING,
        posts BIGINT, authors BIGINT""",
        "window_start, entity, label",
        "",
        _PK_OPTIONS,
    ),
    "author_activity": (
        f"""window_start {TS}, did STRING, posts BIGINT, replies BIGINT, likes BIGINT,
        reposts BIGINT, follows BIGINT, distinct_targets BIGINT, mean_toxicity DOUBLE,
        first_post_at {TS}, last_post_at {TS}, mean_interval_s DOUBLE,
        bot_score DOUBLE""",
        "window_start, did",
        "",
        _PK_OPTIONS,
    ),
    "post_engagement": (
        f"""post_uri STRING, did STRING, posted_at {TS}, likes BIGINT, reposts BIGINT,
        replies BIGINT, last_engagement_at {TS}, viral_velocity DOUBLE""",
        "post_uri",
        "",
        _PK_OPTIONS,
    ),
    "anomalies": (
        f"""metric STRING, window_start {TS}, `value` DOUBLE, trailing_minutes BIGINT,
        trailing_mean DOUBLE, trailing_stddev DOUBLE, z_score DOUBLE""",
        "metric, window_start",
        "",
        _PK_OPTIONS,
    ),
    "late_events": (
        f"source STRING, window_start {TS}, events BIGINT",
        "source, window_start",
        "",
        _PK_OPTIONS,
    ),
}


def create_table(database: str, name: str) -> str:
    columns, key, partition, options = TABLES[name]
    primary = f",\n  PRIMARY KEY ({key}) NOT ENFORCED" if key else ""
    partitioned = f"\nPARTITIONED BY ({partition})" if partition else ""
    with_ = ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    return (
        f"CREATE TABLE IF NOT EXISTS `{CATALOG}`.`{database}`.`{name}` (\n  {columns}{primary}\n)"
        f"{partitioned}\nWITH (\n{with_}\n)"
    )
