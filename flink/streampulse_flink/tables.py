"""The Paimon tables (database ``streampulse``): names, keys and storage options.

``enriched_posts`` is append-only. Every aggregate has a primary key: a window's row is written
once when the window closes (author activity: the hour so far, overwritten at each step), and a
post's engagement row is upserted as engagements arrive.
"""

from __future__ import annotations

CATALOG = "lake"

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
    "merge-engine": "deduplicate",
    # Readers query the tables' current state (DuckDB, Trino, batch Flink); no changelog files,
    # which also lets the job send upserts without their retractions.
    "changelog-producer": "none",
}

_APPEND_OPTIONS = {
    "bucket": "4",
    "bucket-key": "did",
    **_PARQUET,
    # small-file compaction of the append table, in the writer
    "compaction.min.file-num": "5",
    "compaction.max.file-num": "50",
    "target-file-size": "128 mb",
}

# name -> (columns, primary key, partition keys, options)
TABLES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "enriched_posts": (
        """event_id STRING, did STRING, time_us BIGINT, event_time TIMESTAMP(3),
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
        """window_start TIMESTAMP(3), collection STRING, lang STRING, events BIGINT,
        creates BIGINT, deletes BIGINT, authors BIGINT""",
        "window_start, collection, lang",
        "",
        _PK_OPTIONS,
    ),
    "toxicity_per_minute": (
        """window_start TIMESTAMP(3), lang STRING, posts BIGINT, toxic_posts BIGINT,
        mean_toxicity DOUBLE, p95_toxicity DOUBLE""",
        "window_start, lang",
        "",
        _PK_OPTIONS,
    ),
    "trending_hashtags": (
        """window_start TIMESTAMP(3), window_end TIMESTAMP(3), hashtag STRING, posts BIGINT,
        authors BIGINT""",
        "window_start, hashtag",
        "",
        _PK_OPTIONS,
    ),
    "trending_entities": (
        """window_start TIMESTAMP(3), window_end TIMESTAMP(3), entity STRING, label STRING,
        posts BIGINT, authors BIGINT""",
        "window_start, entity, label",
        "",
        _PK_OPTIONS,
    ),
    "author_activity": (
        """window_start TIMESTAMP(3), did STRING, posts BIGINT, replies BIGINT, likes BIGINT,
        reposts BIGINT, follows BIGINT, distinct_targets BIGINT, mean_toxicity DOUBLE,
        first_post_at TIMESTAMP(3), last_post_at TIMESTAMP(3), mean_interval_s DOUBLE,
        bot_score DOUBLE""",
        "window_start, did",
        "",
        _PK_OPTIONS,
    ),
    "post_engagement": (
        """post_uri STRING, did STRING, posted_at TIMESTAMP(3), likes BIGINT, reposts BIGINT,
        replies BIGINT, last_engagement_at TIMESTAMP(3), viral_velocity DOUBLE""",
        "post_uri",
        "",
        _PK_OPTIONS,
    ),
    "anomalies": (
        """metric STRING, window_start TIMESTAMP(3), `value` DOUBLE, trailing_minutes BIGINT,
        trailing_mean DOUBLE, trailing_stddev DOUBLE, z_score DOUBLE""",
        "metric, window_start",
        "",
        _PK_OPTIONS,
    ),
    "late_events": (
        "source STRING, window_start TIMESTAMP(3), events BIGINT",
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
