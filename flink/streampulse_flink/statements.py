"""The job as SQL text: Kafka sources, deduplicated views, and one INSERT per Paimon table.

Event time is ``time_us`` (Jetstream's clock) with a bounded out-of-orderness watermark.
Aggregates are event-time windows (Flink's window table functions): each window is computed once,
in memory, and written when the watermark passes its end, so a table gets one row per window and
key instead of an update per event.

A record is *late* when the minute it belongs to was already closed by the watermark when it
arrived. Late records are counted in ``late_events`` (per source and minute) and kept, flagged,
in ``enriched_posts``; the per-minute tables, and the anomalies computed from them, leave them
out (their minute is already written). Windows that are still open count them: the later
sliding windows of the trending tables, the author's hour if it has not ended, a post's first
hour of engagement. Duplicates (same ``event_id``) are removed before anything is counted.
"""

from __future__ import annotations

from streampulse_flink.options import JobOptions
from streampulse_flink.schemas import (
    ENRICHED_FIELDS,
    ENRICHED_READ,
    RAW_FIELDS,
    RAW_READ,
    columns,
    read,
)
from streampulse_flink.tables import CATALOG, TABLES, create_table

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
P95_BUCKETS = 20  # toxicity histogram of 0.05 wide buckets: p95 is a bucket's upper edge
# A trailing standard deviation below this counts as none (no z-score from rounding noise).
MIN_STDDEV = 1e-6


def _source(name: str, topic: str, fields: tuple[tuple[str, str], ...], opts: JobOptions) -> str:
    return f"""CREATE TEMPORARY TABLE {name} (
{columns(fields)},
  event_time AS TO_TIMESTAMP_LTZ(CAST(time_us / 1000 AS BIGINT), 3),
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time - INTERVAL '{opts.watermark_delay_s}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '{topic}',
  'properties.bootstrap.servers' = '{opts.bootstrap_servers}',
  'properties.group.id' = '{opts.group_id}',
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = 'group-offsets',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true',
  'json.fail-on-missing-field' = 'false'
)"""


def _unique_view(name: str, source: str, fields: tuple[tuple[str, str], ...]) -> str:
    """Mark late records, then keep the first record of each event_id (insert-only).

    Late: the end of the record's minute (its last millisecond) is at or behind the watermark,
    which is exactly when a one-minute window has been emitted and drops the record.
    """
    minute_closed = (
        "TIMESTAMPADD(MILLISECOND, 59999, FLOOR(event_time TO MINUTE))"
        " <= CURRENT_WATERMARK(event_time)"
    )
    # Every input column but row_num: the deduplicated rows then pass on as they arrive from
    # the shuffle (binary rows, cheap to hand to each consumer), without a projection.
    kept = ", ".join([*(f"`{field}`" for field, _ in fields), "event_time", "proc_time", "is_late"])
    return f"""CREATE TEMPORARY VIEW {name} AS
SELECT {kept} FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc_time ASC) AS row_num
  FROM (
    SELECT *, COALESCE({minute_closed}, FALSE) AS is_late
    FROM {source}
    WHERE event_id IS NOT NULL AND did IS NOT NULL AND time_us IS NOT NULL
  )
) WHERE row_num = 1"""


def _minute(column: str = "event_time") -> str:
    return f"CAST(FLOOR({column} TO MINUTE) AS TIMESTAMP(3))"


def _uri_did(column: str) -> str:
    """The repository (author) DID of an ``at://did/collection/rkey`` URI; NULL if not one.

    Cut from the string as it is (LOCATE, SUBSTRING): REGEXP_EXTRACT compiles its pattern for
    every record, and SPLIT_INDEX decodes the whole URI to Java characters and splits all of it.
    """
    slash = f"LOCATE('/', {column}, 6)"
    did = (
        f"CASE WHEN {slash} > 0 THEN SUBSTRING({column}, 6, {slash} - 6) "
        f"ELSE SUBSTRING({column}, 6) END"
    )
    return f"CASE WHEN SUBSTRING({column}, 1, 5) = 'at://' THEN NULLIF({did}, '') END"


def _first_lang() -> str:
    return "CASE WHEN CARDINALITY(langs) > 0 THEN langs[1] ELSE 'und' END"


def _tumble(view: str, size: str) -> str:
    return f"TABLE(TUMBLE(TABLE {view}, DESCRIPTOR(event_time), INTERVAL {size}))"


def _views() -> list[str]:
    """Inputs of the windowed aggregates, each keeping ``event_time`` as its time attribute."""
    return [
        f"""CREATE TEMPORARY VIEW hashtag_uses AS
SELECT event_id, did, event_time, LOWER(tag) AS hashtag
FROM raw_unique CROSS JOIN UNNEST(hashtags) AS h(tag)
WHERE collection = '{POST}' AND operation = 'create'""",
        """CREATE TEMPORARY VIEW entity_uses AS
SELECT event_id, did, event_time, LOWER(e_text) AS entity, e_label AS label
FROM enriched_unique CROSS JOIN UNNEST(entities) AS e(e_text, e_label, e_start, e_end, e_score)
WHERE operation = 'create'""",
        # actions from the raw topic, toxicity from the enriched one
        f"""CREATE TEMPORARY VIEW author_events AS
SELECT did, event_time, time_us,
  CASE
    WHEN collection = '{POST}' AND reply_parent IS NULL THEN 'post'
    WHEN collection = '{POST}' THEN 'reply'
    WHEN collection = '{LIKE}' THEN 'like'
    WHEN collection = '{REPOST}' THEN 'repost'
    ELSE 'follow'
  END AS action,
  CASE
    WHEN collection = '{FOLLOW}' THEN subject_did
    WHEN collection = '{POST}' THEN {_uri_did("reply_parent")}
    ELSE {_uri_did("subject_uri")}
  END AS target,
  CAST(NULL AS DOUBLE) AS tox
FROM raw_unique
WHERE operation = 'create' AND collection IN ('{POST}', '{LIKE}', '{REPOST}', '{FOLLOW}')
UNION ALL
SELECT did, event_time, time_us, CAST(NULL AS STRING), CAST(NULL AS STRING), toxicity.score
FROM enriched_unique
WHERE operation = 'create' AND toxicity IS NOT NULL AND toxicity.score IS NOT NULL""",
        # per-minute values watched for anomalies; window_time keeps them in event time
        f"""CREATE TEMPORARY VIEW minute_metrics AS
SELECT 'volume' AS metric, window_start, window_time, CAST(COUNT(*) AS DOUBLE) AS metric_value
FROM {_tumble("raw_unique", "'1' MINUTE")}
GROUP BY window_start, window_end, window_time
UNION ALL
SELECT 'toxicity' AS metric, window_start, window_time, AVG(toxicity.score) AS metric_value
FROM {_tumble("enriched_unique", "'1' MINUTE")}
WHERE toxicity IS NOT NULL AND toxicity.score IS NOT NULL
GROUP BY window_start, window_end, window_time""",
    ]


def setup(opts: JobOptions) -> list[str]:
    """Catalog, database, tables, sources and views, in order."""
    raw_fields = read(RAW_FIELDS, RAW_READ)
    enriched_fields = read(ENRICHED_FIELDS, ENRICHED_READ)
    return [
        opts.catalog_sql(CATALOG),
        f"CREATE DATABASE IF NOT EXISTS `{CATALOG}`.`{opts.database}`",
        *(create_table(opts.database, name) for name in TABLES),
        _source("raw_events", opts.raw_topic, raw_fields, opts),
        _source("enriched_events", opts.enriched_topic, enriched_fields, opts),
        _unique_view("raw_unique", "raw_events", raw_fields),
        _unique_view("enriched_unique", "enriched_events", enriched_fields),
        *_views(),
    ]


def _p95() -> str:
    """Upper edge of the histogram bucket that holds the ceil(0.95 n)-th smallest score."""
    need = "CEIL(0.95 * posts)"
    cases = []
    for i in range(P95_BUCKETS - 1):
        cumulative = " + ".join(f"h{j}" for j in range(i + 1))
        cases.append(f"WHEN {cumulative} >= {need} THEN {(i + 1) / P95_BUCKETS}")
    return "CASE " + " ".join(cases) + " ELSE 1.0 END"


def _histogram() -> str:
    bucket = f"LEAST(CAST(FLOOR(tox * {P95_BUCKETS}) AS INT), {P95_BUCKETS - 1})"
    return ",\n    ".join(
        f"SUM(CASE WHEN {bucket} = {i} THEN 1 ELSE 0 END) AS h{i}" for i in range(P95_BUCKETS)
    )


def _trending(db: str, kind: str, view: str, keys: str, opts: JobOptions) -> str:
    """Top N keys of sliding windows (``trending_window_min`` long, sliding by a minute).

    Each window is counted and ranked once, when the watermark passes its end.
    """
    hop = (
        f"TABLE(HOP(TABLE {view}, DESCRIPTOR(event_time), INTERVAL '1' MINUTE, "
        f"INTERVAL '{opts.trending_window_min}' MINUTE))"
    )
    return f"""INSERT INTO {db}.`trending_{kind}`
SELECT CAST(window_start AS TIMESTAMP(3)), CAST(window_end AS TIMESTAMP(3)), {keys}, posts,
  authors
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY window_start, window_end ORDER BY posts DESC, authors DESC, {keys}) AS rank_no
  FROM (
    SELECT window_start, window_end, {keys}, COUNT(DISTINCT event_id) AS posts,
      COUNT(DISTINCT did) AS authors
    FROM {hop}
    GROUP BY window_start, window_end, {keys}
  )
) WHERE rank_no <= {opts.trending_top_n}"""


def _author_activity(db: str, opts: JobOptions) -> str:
    """Per author and hour: actions, distinct accounts acted on, toxicity, post cadence, bot score.

    A cumulative window: every ``author_step_min`` minutes each author active in the hour so far
    gets the hour's figures up to then (the row of ``(hour, did)`` is overwritten), and the last
    step, at the end of the hour, writes the final ones.

    ``bot_score`` (0..1) = 0.5 * min(actions / 120, 1)          -- volume: 2 actions a minute
                         + 0.3 * max(1 - mean_interval_s / 60, 0) -- cadence: posts < 1 min apart
                         + 0.2 * follows / actions                -- follow-heavy activity
    """
    actions = "posts + replies + likes + reposts + follows"
    posting = "action IN ('post', 'reply')"
    cumulate = (
        "TABLE(CUMULATE(TABLE author_events, DESCRIPTOR(event_time), "
        f"INTERVAL '{opts.author_step_min}' MINUTE, INTERVAL '1' HOUR))"
    )
    return f"""INSERT INTO {db}.author_activity
SELECT window_start, did, posts, replies, likes, reposts, follows, distinct_targets,
  mean_toxicity, first_post_at, last_post_at, mean_interval_s,
  CASE WHEN {actions} = 0 THEN 0.0 ELSE
    0.5 * LEAST(CAST({actions} AS DOUBLE) / 120, 1.0)
    + 0.3 * COALESCE(GREATEST(1.0 - mean_interval_s / 60, 0.0), 0.0)
    + 0.2 * CAST(follows AS DOUBLE) / ({actions})
  END AS bot_score
FROM (
  SELECT CAST(window_start AS TIMESTAMP(3)) AS window_start, did,
    SUM(CASE WHEN action = 'post' THEN 1 ELSE 0 END) AS posts,
    SUM(CASE WHEN action = 'reply' THEN 1 ELSE 0 END) AS replies,
    SUM(CASE WHEN action = 'like' THEN 1 ELSE 0 END) AS likes,
    SUM(CASE WHEN action = 'repost' THEN 1 ELSE 0 END) AS reposts,
    SUM(CASE WHEN action = 'follow' THEN 1 ELSE 0 END) AS follows,
    COUNT(DISTINCT target) AS distinct_targets,
    AVG(tox) AS mean_toxicity,
    MIN(CASE WHEN {posting} THEN CAST(event_time AS TIMESTAMP(3)) END) AS first_post_at,
    MAX(CASE WHEN {posting} THEN CAST(event_time AS TIMESTAMP(3)) END) AS last_post_at,
    CASE WHEN COUNT(CASE WHEN {posting} THEN time_us END) >= 2 THEN
      CAST(MAX(CASE WHEN {posting} THEN time_us END)
        - MIN(CASE WHEN {posting} THEN time_us END) AS DOUBLE) / 1000000
      / (COUNT(CASE WHEN {posting} THEN time_us END) - 1)
    END AS mean_interval_s
  FROM {cumulate}
  GROUP BY window_start, window_end, did
)"""


def _post_engagement(db: str, opts: JobOptions) -> str:
    """Likes, reposts and replies a post receives in its first ``engagement_window_min`` minutes.

    ``viral_velocity`` = (likes + 2 * reposts + 3 * replies) / max(minutes from the post to its
    latest counted engagement, 1): weighted engagement per minute. An interval join in event
    time: a post is kept for its first hour, an engagement until no earlier post can arrive. A
    post has a row once it has an engagement, updated by each later one. Grouped by the table's
    key alone (a post's URI names its author and time), so updates are upserts, not retractions.
    """
    posts = f"""SELECT CONCAT('at://', did, '/', collection, '/', rkey) AS post_uri, did,
      event_time
    FROM raw_unique WHERE collection = '{POST}' AND operation = 'create'"""
    engagements = f"""SELECT subject_uri AS post_uri,
      CASE WHEN collection = '{LIKE}' THEN 'like' ELSE 'repost' END AS kind, event_time
    FROM raw_unique
    WHERE collection IN ('{LIKE}', '{REPOST}') AND operation = 'create'
      AND subject_uri IS NOT NULL
    UNION ALL
    SELECT reply_parent AS post_uri, 'reply' AS kind, event_time
    FROM raw_unique
    WHERE collection = '{POST}' AND operation = 'create' AND reply_parent IS NOT NULL"""
    weighted = "CAST(likes + 2 * reposts + 3 * replies AS DOUBLE)"
    return f"""INSERT INTO {db}.post_engagement
SELECT post_uri, did, posted_at, likes, reposts, replies, last_engagement_at,
  {weighted} / GREATEST(
    CAST(TIMESTAMPDIFF(SECOND, posted_at, last_engagement_at) AS DOUBLE) / 60, 1.0
  ) AS viral_velocity
FROM (
  SELECT p.post_uri, MIN(p.did) AS did, MIN(CAST(p.event_time AS TIMESTAMP(3))) AS posted_at,
    SUM(CASE WHEN e.kind = 'like' THEN 1 ELSE 0 END) AS likes,
    SUM(CASE WHEN e.kind = 'repost' THEN 1 ELSE 0 END) AS reposts,
    SUM(CASE WHEN e.kind = 'reply' THEN 1 ELSE 0 END) AS replies,
    MAX(CAST(e.event_time AS TIMESTAMP(3))) AS last_engagement_at
  FROM ({posts}) AS p, ({engagements}) AS e
  WHERE e.post_uri = p.post_uri AND e.event_time >= p.event_time
    AND e.event_time < p.event_time + INTERVAL '{opts.engagement_window_min}' MINUTE
  GROUP BY p.post_uri
)"""


def _anomalies(db: str, opts: JobOptions) -> str:
    """Minutes whose value is ``anomaly_z_threshold`` or more standard deviations above the mean
    of the previous ``anomaly_trailing_min`` minutes that had data (population deviation; at
    least ``anomaly_min_history`` such minutes).

    An event-time OVER window per metric: count, sum and sum of squares of the minutes up to and
    including this one; the trailing figures are those less this minute's own.
    """
    n, mean = "(n - 1)", "(s - metric_value) / (n - 1)"
    variance = f"GREATEST((ss - metric_value * metric_value) / {n} - {mean} * {mean}, 0.0)"
    return f"""INSERT INTO {db}.anomalies
SELECT metric, window_start, metric_value, trailing_minutes, trailing_mean, trailing_stddev,
  (metric_value - trailing_mean) / trailing_stddev AS z_score
FROM (
  SELECT metric, CAST(window_start AS TIMESTAMP(3)) AS window_start, metric_value,
    {n} AS trailing_minutes, {mean} AS trailing_mean, SQRT({variance}) AS trailing_stddev
  FROM (
    SELECT metric, window_start, metric_value,
      COUNT(*) OVER w AS n, SUM(metric_value) OVER w AS s,
      SUM(metric_value * metric_value) OVER w AS ss
    FROM minute_metrics
    WINDOW w AS (
      PARTITION BY metric ORDER BY window_time
      RANGE BETWEEN INTERVAL '{opts.anomaly_trailing_min}' MINUTE PRECEDING AND CURRENT ROW)
  ) WHERE n - 1 >= {opts.anomaly_min_history}
)
WHERE trailing_stddev > {MIN_STDDEV}
  AND (metric_value - trailing_mean) / trailing_stddev >= {opts.anomaly_z_threshold}"""


def inserts(opts: JobOptions) -> list[str]:
    """One INSERT per table; executed together as one job (one statement set)."""
    db = f"`{CATALOG}`.`{opts.database}`"
    return [
        f"""INSERT INTO {db}.enriched_posts
SELECT event_id, did, time_us, CAST(event_time AS TIMESTAMP(3)), operation, `text`, langs,
  created_at, reply_root, reply_parent, embed_type, hashtags, mentions, links,
  toxicity.score, toxicity.labels, entities, sentiment.label, sentiment.score, `models`,
  ingested_at_us, enriched_at_us, is_late, DATE_FORMAT(event_time, 'yyyy-MM-dd')
FROM enriched_unique""",
        f"""INSERT INTO {db}.volume_per_minute
SELECT CAST(window_start AS TIMESTAMP(3)), collection, lang, COUNT(*),
  SUM(CASE WHEN operation = 'create' THEN 1 ELSE 0 END),
  SUM(CASE WHEN operation = 'delete' THEN 1 ELSE 0 END), COUNT(DISTINCT did)
FROM (
  SELECT window_start, window_end, COALESCE(collection, CONCAT('#', kind)) AS collection,
    CASE WHEN collection = '{POST}' THEN {_first_lang()} ELSE '-' END AS lang, operation, did
  FROM {_tumble("raw_unique", "'1' MINUTE")}
) GROUP BY window_start, window_end, collection, lang""",
        f"""INSERT INTO {db}.toxicity_per_minute
SELECT CAST(window_start AS TIMESTAMP(3)), lang, posts, toxic_posts, mean_toxicity, {_p95()}
FROM (
  SELECT window_start, lang, COUNT(*) AS posts,
    SUM(CASE WHEN tox >= {opts.toxic_threshold} THEN 1 ELSE 0 END) AS toxic_posts,
    AVG(tox) AS mean_toxicity,
    {_histogram()}
  FROM (
    SELECT window_start, window_end, {_first_lang()} AS lang, toxicity.score AS tox
    FROM {_tumble("enriched_unique", "'1' MINUTE")}
    WHERE toxicity IS NOT NULL AND toxicity.score IS NOT NULL
  ) GROUP BY window_start, window_end, lang
)""",
        _trending(db, "hashtags", "hashtag_uses", "hashtag", opts),
        _trending(db, "entities", "entity_uses", "entity, label", opts),
        _author_activity(db, opts),
        _post_engagement(db, opts),
        _anomalies(db, opts),
        f"""INSERT INTO {db}.late_events
SELECT source, window_start, COUNT(*) FROM (
  SELECT 'raw' AS source, {_minute()} AS window_start FROM raw_unique WHERE is_late
  UNION ALL
  SELECT 'enriched' AS source, {_minute()} AS window_start FROM enriched_unique WHERE is_late
) GROUP BY source, window_start""",
    ]
