"""The job as SQL text: Kafka sources, deduplicated views, and one INSERT per Paimon table.

Event time is ``time_us`` (Jetstream's clock) with a bounded out-of-orderness watermark. A record
whose event time is at or behind the watermark when it arrives is *late*: it is marked, counted in
``late_events``, and still counted in every aggregate (aggregates are keyed by the minute of the
event and upserted, so a late event corrects its minute instead of being dropped). Duplicates
(same ``event_id``) are removed before anything is counted.
"""

from __future__ import annotations

from streampulse_flink.options import JobOptions
from streampulse_flink.schemas import ENRICHED_FIELDS, RAW_FIELDS, columns
from streampulse_flink.tables import CATALOG, TABLES, create_table

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
P95_BUCKETS = 20  # toxicity histogram of 0.05 wide buckets: p95 is a bucket's upper edge


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


def _unique_view(name: str, source: str) -> str:
    """Mark late records, then keep the first record of each event_id (insert-only)."""
    return f"""CREATE TEMPORARY VIEW {name} AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc_time ASC) AS row_num
  FROM (
    SELECT *, COALESCE(event_time <= CURRENT_WATERMARK(event_time), FALSE) AS is_late
    FROM {source}
    WHERE event_id IS NOT NULL AND did IS NOT NULL AND time_us IS NOT NULL
  )
) WHERE row_num = 1"""


def _minute(column: str = "event_time") -> str:
    return f"CAST(FLOOR({column} TO MINUTE) AS TIMESTAMP(3))"


def _hour(column: str = "event_time") -> str:
    return f"CAST(FLOOR({column} TO HOUR) AS TIMESTAMP(3))"


def _uri_did(column: str) -> str:
    """The repository (author) DID of an ``at://did/collection/rkey`` URI."""
    return f"REGEXP_EXTRACT({column}, '^at://([^/]+)', 1)"


def _minute_metrics_view() -> str:
    """Per-minute values watched for anomalies: raw event volume and mean post toxicity."""
    return f"""CREATE TEMPORARY VIEW minute_metrics AS
SELECT 'volume' AS metric, window_start, CAST(COUNT(*) AS DOUBLE) AS metric_value
FROM (SELECT {_minute()} AS window_start FROM raw_unique)
GROUP BY window_start
UNION ALL
SELECT 'toxicity' AS metric, window_start, AVG(tox) AS metric_value
FROM (
  SELECT {_minute()} AS window_start, toxicity.score AS tox
  FROM enriched_unique WHERE toxicity IS NOT NULL AND toxicity.score IS NOT NULL
) GROUP BY window_start"""


def _first_lang() -> str:
    return "CASE WHEN CARDINALITY(langs) > 0 THEN langs[1] ELSE 'und' END"


def setup(opts: JobOptions) -> list[str]:
    """Catalog, database, tables, sources and views, in order."""
    return [
        opts.catalog_sql(CATALOG),
        f"CREATE DATABASE IF NOT EXISTS `{CATALOG}`.`{opts.database}`",
        *(create_table(opts.database, name) for name in TABLES),
        _source("raw_events", opts.raw_topic, RAW_FIELDS, opts),
        _source("enriched_events", opts.enriched_topic, ENRICHED_FIELDS, opts),
        _unique_view("raw_unique", "raw_events"),
        _unique_view("enriched_unique", "enriched_events"),
        _minute_metrics_view(),
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


def _trending(kind: str, source: str, key_columns: str, opts: JobOptions) -> str:
    """Counts over sliding windows (``trending_window_min`` long, sliding by a minute), top N.

    Each use is expanded into the windows that contain its minute; a window's count is upserted
    as uses arrive, and keys that fall out of the top N are deleted from the table.
    """
    width = opts.trending_window_min
    offsets = ", ".join(str(k) for k in range(width))
    keys = key_columns
    return f"""INSERT INTO `{CATALOG}`.`{opts.database}`.`trending_{kind}`
SELECT window_start, TIMESTAMPADD(MINUTE, {width}, window_start) AS window_end, {keys},
  posts, authors
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY window_start ORDER BY posts DESC, authors DESC, {keys}) AS rank_no
  FROM (
    SELECT window_start, {keys}, COUNT(DISTINCT event_id) AS posts,
      COUNT(DISTINCT did) AS authors
    FROM (
      SELECT TIMESTAMPADD(MINUTE, -k, {_minute()}) AS window_start, event_id, did, {keys}
      FROM ({source}) CROSS JOIN UNNEST(ARRAY[{offsets}]) AS s(k)
    )
    GROUP BY window_start, {keys}
  )
) WHERE rank_no <= {opts.trending_top_n}"""


def _author_activity(db: str) -> str:
    """Per author and hour: actions, distinct accounts acted on, toxicity, post cadence, bot score.

    Rows come from both topics: actions from the raw topic, toxicity from the enriched one.
    ``bot_score`` (0..1) = 0.5 * min(actions / 120, 1)          -- volume: 2 actions a minute
                         + 0.3 * max(1 - mean_interval_s / 60, 0) -- cadence: posts < 1 min apart
                         + 0.2 * follows / actions                -- follow-heavy activity
    """
    actions = "posts + replies + likes + reposts + follows"
    return f"""INSERT INTO {db}.author_activity
SELECT window_start, did, posts, replies, likes, reposts, follows, distinct_targets,
  mean_toxicity, first_post_at, last_post_at, mean_interval_s,
  CASE WHEN {actions} = 0 THEN 0.0 ELSE
    0.5 * LEAST(CAST({actions} AS DOUBLE) / 120, 1.0)
    + 0.3 * COALESCE(GREATEST(1.0 - mean_interval_s / 60, 0.0), 0.0)
    + 0.2 * CAST(follows AS DOUBLE) / ({actions})
  END AS bot_score
FROM (
  SELECT window_start, did,
    SUM(CASE WHEN action = 'post' THEN 1 ELSE 0 END) AS posts,
    SUM(CASE WHEN action = 'reply' THEN 1 ELSE 0 END) AS replies,
    SUM(CASE WHEN action = 'like' THEN 1 ELSE 0 END) AS likes,
    SUM(CASE WHEN action = 'repost' THEN 1 ELSE 0 END) AS reposts,
    SUM(CASE WHEN action = 'follow' THEN 1 ELSE 0 END) AS follows,
    COUNT(DISTINCT target) AS distinct_targets,
    AVG(tox) AS mean_toxicity,
    MIN(post_at) AS first_post_at,
    MAX(post_at) AS last_post_at,
    CASE WHEN COUNT(post_us) >= 2
      THEN CAST(MAX(post_us) - MIN(post_us) AS DOUBLE) / 1000000 / (COUNT(post_us) - 1)
    END AS mean_interval_s
  FROM (
    SELECT window_start, did, action, target, tox,
      CASE WHEN action IN ('post', 'reply') THEN t END AS post_at,
      CASE WHEN action IN ('post', 'reply') THEN time_us END AS post_us
    FROM (
      SELECT {_hour()} AS window_start, did,
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
        CAST(event_time AS TIMESTAMP(3)) AS t, time_us, CAST(NULL AS DOUBLE) AS tox
      FROM raw_unique
      WHERE operation = 'create' AND collection IN ('{POST}', '{LIKE}', '{REPOST}', '{FOLLOW}')
      UNION ALL
      SELECT {_hour()} AS window_start, did, CAST(NULL AS STRING) AS action,
        CAST(NULL AS STRING) AS target, CAST(event_time AS TIMESTAMP(3)) AS t, time_us,
        toxicity.score AS tox
      FROM enriched_unique
      WHERE operation = 'create' AND toxicity IS NOT NULL AND toxicity.score IS NOT NULL
    )
  ) GROUP BY window_start, did
)"""


def _post_engagement(db: str, opts: JobOptions) -> str:
    """Likes, reposts and replies a post receives in its first ``engagement_window_min`` minutes.

    ``viral_velocity`` = (likes + 2 * reposts + 3 * replies) / max(minutes from the post to its
    latest counted engagement, 1): weighted engagement per minute. A post has a row once it has
    an engagement (a regular join: the post and its engagements may arrive in any order).
    """
    posts = f"""SELECT CONCAT('at://', did, '/', collection, '/', rkey) AS post_uri, did,
      CAST(event_time AS TIMESTAMP(3)) AS posted_at
    FROM raw_unique WHERE collection = '{POST}' AND operation = 'create'"""
    engagements = f"""SELECT subject_uri AS post_uri,
      CASE WHEN collection = '{LIKE}' THEN 'like' ELSE 'repost' END AS kind,
      CAST(event_time AS TIMESTAMP(3)) AS t
    FROM raw_unique
    WHERE collection IN ('{LIKE}', '{REPOST}') AND operation = 'create'
      AND subject_uri IS NOT NULL
    UNION ALL
    SELECT reply_parent AS post_uri, 'reply' AS kind, CAST(event_time AS TIMESTAMP(3)) AS t
    FROM raw_unique
    WHERE collection = '{POST}' AND operation = 'create' AND reply_parent IS NOT NULL"""
    weighted = "CAST(likes + 2 * reposts + 3 * replies AS DOUBLE)"
    return f"""INSERT INTO {db}.post_engagement
SELECT post_uri, did, posted_at, likes, reposts, replies, last_engagement_at,
  {weighted} / GREATEST(
    CAST(TIMESTAMPDIFF(SECOND, posted_at, last_engagement_at) AS DOUBLE) / 60, 1.0
  ) AS viral_velocity
FROM (
  SELECT p.post_uri, p.did, p.posted_at,
    SUM(CASE WHEN e.kind = 'like' THEN 1 ELSE 0 END) AS likes,
    SUM(CASE WHEN e.kind = 'repost' THEN 1 ELSE 0 END) AS reposts,
    SUM(CASE WHEN e.kind = 'reply' THEN 1 ELSE 0 END) AS replies,
    MAX(e.t) AS last_engagement_at
  FROM ({posts}) AS p
  JOIN ({engagements}) AS e
    ON e.post_uri = p.post_uri AND e.t >= p.posted_at
    AND e.t < TIMESTAMPADD(MINUTE, {opts.engagement_window_min}, p.posted_at)
  GROUP BY p.post_uri, p.did, p.posted_at
)"""


def _anomalies(db: str, opts: JobOptions) -> str:
    """Minutes whose value is ``anomaly_z_threshold`` or more standard deviations above the mean
    of the previous ``anomaly_trailing_min`` minutes that had data (population deviation; at
    least ``anomaly_min_history`` such minutes). A minute that stops qualifying is deleted."""
    return f"""INSERT INTO {db}.anomalies
SELECT metric, window_start, metric_value, trailing_minutes, trailing_mean, trailing_stddev,
  (metric_value - trailing_mean) / trailing_stddev AS z_score
FROM (
  SELECT c.metric, c.window_start, MAX(c.metric_value) AS metric_value,
    COUNT(*) AS trailing_minutes, AVG(t.metric_value) AS trailing_mean,
    STDDEV_POP(t.metric_value) AS trailing_stddev
  FROM minute_metrics AS c
  JOIN minute_metrics AS t
    ON t.metric = c.metric AND t.window_start < c.window_start
    AND t.window_start >= TIMESTAMPADD(MINUTE, -{opts.anomaly_trailing_min}, c.window_start)
  GROUP BY c.metric, c.window_start
)
WHERE trailing_minutes >= {opts.anomaly_min_history} AND trailing_stddev > 0
  AND (metric_value - trailing_mean) / trailing_stddev >= {opts.anomaly_z_threshold}"""


def inserts(opts: JobOptions) -> list[str]:
    """One INSERT per table; executed together as one job (one statement set)."""
    db = f"`{CATALOG}`.`{opts.database}`"
    hashtags = f"""SELECT event_id, did, event_time, LOWER(tag) AS hashtag
        FROM raw_unique CROSS JOIN UNNEST(hashtags) AS h(tag)
        WHERE collection = '{POST}' AND operation = 'create'"""
    entities = """SELECT event_id, did, event_time, LOWER(e_text) AS entity, e_label AS label
        FROM enriched_unique
        CROSS JOIN UNNEST(entities) AS e(e_text, e_label, e_start, e_end, e_score)
        WHERE operation = 'create'"""
    return [
        f"""INSERT INTO {db}.enriched_posts
SELECT event_id, did, time_us, CAST(event_time AS TIMESTAMP(3)), operation, `text`, langs,
  created_at, reply_root, reply_parent, embed_type, hashtags, mentions, links,
  toxicity.score, toxicity.labels, entities, sentiment.label, sentiment.score, `models`,
  ingested_at_us, enriched_at_us, is_late, DATE_FORMAT(event_time, 'yyyy-MM-dd')
FROM enriched_unique""",
        f"""INSERT INTO {db}.volume_per_minute
SELECT window_start, collection, lang, COUNT(*), SUM(CASE WHEN operation = 'create' THEN 1
  ELSE 0 END), SUM(CASE WHEN operation = 'delete' THEN 1 ELSE 0 END), COUNT(DISTINCT did)
FROM (
  SELECT {_minute()} AS window_start, COALESCE(collection, CONCAT('#', kind)) AS collection,
    CASE WHEN collection = '{POST}' THEN {_first_lang()} ELSE '-' END AS lang, operation, did
  FROM raw_unique
) GROUP BY window_start, collection, lang""",
        f"""INSERT INTO {db}.toxicity_per_minute
SELECT window_start, lang, posts, toxic_posts, mean_toxicity, {_p95()}
FROM (
  SELECT window_start, lang, COUNT(*) AS posts,
    SUM(CASE WHEN tox >= {opts.toxic_threshold} THEN 1 ELSE 0 END) AS toxic_posts,
    AVG(tox) AS mean_toxicity,
    {_histogram()}
  FROM (
    SELECT {_minute()} AS window_start, {_first_lang()} AS lang, toxicity.score AS tox
    FROM enriched_unique WHERE toxicity IS NOT NULL AND toxicity.score IS NOT NULL
  ) GROUP BY window_start, lang
)""",
        _trending("hashtags", hashtags, "hashtag", opts),
        _trending("entities", entities, "entity, label", opts),
        _author_activity(db),
        _post_engagement(db, opts),
        _anomalies(db, opts),
        f"""INSERT INTO {db}.late_events
SELECT source, window_start, COUNT(*) FROM (
  SELECT 'raw' AS source, {_minute()} AS window_start FROM raw_unique WHERE is_late
  UNION ALL
  SELECT 'enriched' AS source, {_minute()} AS window_start FROM enriched_unique WHERE is_late
) GROUP BY source, window_start""",
    ]
