"""make bench-trino: the Flink bench's tables queried through Trino, against DuckDB on the same
snapshot.

The tables: the Flink bench's event stream (the replay's synthetic stream at the real rate
profile, normalized by the ingest code, every post enriched), ``BENCH_TRINO_EVENTS`` of them
(default 200,000), through the Flink job at parallelism 1 into a local warehouse, until every
event is counted; then the job stops and the tables stay as they are.

The queries: the Grafana content dashboard's nine panels over the whole time range, and five
analyst queries (top entities by hour, toxicity by language over the day, author activity
percentiles, the most engaged posts, volume by collection and hour). Each runs ``ROUNDS`` times
(after one warm-up round) on Trino (the local coordinator and REST catalog, ``streampulse local
trino``) and on DuckDB over pypaimon (``streampulse sql``), in this process and this run; both
must return the same number of rows. ``rows_scanned`` is the rows of every table the queries
read, once.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.settings import PaimonSettings, Settings
from tests.bench import bench_flink
from tests.harness.dashboard_sql import QUALIFIED, for_duckdb, panel_queries
from tests.harness.trino import TrinoStack

EVENTS = int(os.environ.get("BENCH_TRINO_EVENTS", "200000"))
ROUNDS = int(os.environ.get("BENCH_TRINO_ROUNDS", "5"))
T = QUALIFIED
PERCENTILES = {  # the one function the two dialects spell differently
    "trino": "approx_percentile({column}, {q})",
    "duckdb": "quantile_cont({column}, {q})",
}
ANALYST = {
    "top entities by hour": f"""
        SELECT date_trunc('hour', window_start) AS hour, entity, label, sum(posts) AS posts
        FROM {T}trending_entities GROUP BY 1, 2, 3 ORDER BY hour, posts DESC, entity""",
    "toxicity by language, the day": f"""
        SELECT lang, sum(posts) AS posts, sum(toxic_posts) AS toxic,
               sum(mean_toxicity * posts) / sum(posts) AS mean_toxicity
        FROM {T}toxicity_per_minute GROUP BY lang ORDER BY posts DESC, lang""",
    "author activity percentiles": f"""
        SELECT count(*) AS authors, {{p50}} AS p50_actions, {{p90}} AS p90_actions,
               {{p99}} AS p99_actions, max(posts + replies + likes + reposts + follows) AS top
        FROM {T}author_activity""",
    "most engaged posts": f"""
        SELECT post_uri, likes + reposts + replies AS engagements, viral_velocity
        FROM {T}post_engagement ORDER BY engagements DESC, post_uri LIMIT 20""",
    "volume by collection and hour": f"""
        SELECT date_trunc('hour', window_start) AS hour, collection, sum(events) AS events
        FROM {T}volume_per_minute GROUP BY 1, 2 ORDER BY 1, 2""",
}
TABLES = (
    "enriched_posts", "volume_per_minute", "toxicity_per_minute", "trending_hashtags",
    "trending_entities", "late_events", "author_activity", "post_engagement", "anomalies",
)  # fmt: skip


def _dialect(sql: str, engine: str) -> str:
    actions = "posts + replies + likes + reposts + follows"
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        sql = sql.replace("{" + name + "}", PERCENTILES[engine].format(column=actions, q=q))
    return sql if engine == "trino" else for_duckdb(sql)


def queries() -> dict[str, str]:
    """Every query of the bench, in Trino's spelling (the dashboard's over all of time)."""
    panels = panel_queries(datetime(2000, 1, 1), datetime(2100, 1, 1))
    return {f"panel: {title}": sql for title, sql in panels.items()} | ANALYST


def timed(run: Callable[[str], list[Any]], sql: str) -> tuple[float, int]:
    started = time.perf_counter()
    rows = run(sql)
    return (time.perf_counter() - started) * 1000, len(rows)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_tables(settings: Settings, work: Path) -> PaimonSettings:
    """The Flink bench's events through the job into ``work``'s warehouse."""
    print(f"building {EVENTS:,} events ...", flush=True)
    raw, posts = bench_flink.build_events(settings.replay.data_dir, EVENTS)
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    with KafkaBroker(libs=libs, data_dir=work / "kafka", heap_mb=1024) as broker:
        kafka = bench_flink.load_topics(broker, raw, posts)
        expected = (len({orjson.loads(v)["event_id"] for _k, v in raw}), len(posts))
        startup, seconds, job, _lakehouse = bench_flink.run_throughput(
            settings, kafka, 1, work, expected
        )
        job.stop()
    print(f"tables written: job running after {startup:.1f}s, every event counted "
          f"{seconds:.1f}s later", flush=True)  # fmt: skip
    return bench_flink.paimon_settings(work, 1)


def main() -> None:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-trino-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        paimon = build_tables(settings, work)
        lakehouse = Lakehouse.open(paimon, work / "duckdb")
        rows_scanned = sum(lakehouse.read(table, None).num_rows for table in TABLES)
        on_trino: dict[str, list[float]] = {}
        on_duckdb: dict[str, list[float]] = {}
        print("starting Trino and the Iceberg REST catalog ...", flush=True)
        with TrinoStack(settings, paimon, work / "trino") as trino:
            for name, sql in queries().items():
                trino_sql, duck_sql = _dialect(sql, "trino"), _dialect(sql, "duckdb")
                for round_ in range(ROUNDS + 1):  # round 0 warms both up
                    t_ms, t_rows = timed(trino.rows, trino_sql)
                    d_ms, d_rows = timed(lambda q: lakehouse.query(q).table.to_pylist(), duck_sql)
                    if t_rows != d_rows:
                        raise AssertionError(f"{name}: Trino {t_rows} rows, DuckDB {d_rows}")
                    if round_:
                        on_trino.setdefault(name, []).append(t_ms)
                        on_duckdb.setdefault(name, []).append(d_ms)
    every_trino = [ms for values in on_trino.values() for ms in values]
    every_duckdb = [ms for values in on_duckdb.values() for ms in values]
    print()
    print(f"{'query':<46}{'Trino p50 ms':>14}{'DuckDB p50 ms':>15}")
    for name, trino_times in on_trino.items():
        trino_ms, duck_ms = statistics.median(trino_times), statistics.median(on_duckdb[name])
        print(f"{name[:45]:<46}{trino_ms:>14.1f}{duck_ms:>15.1f}")
    p50, p95 = statistics.median(every_trino), _pct(every_trino, 0.95)
    duck_p50 = statistics.median(every_duckdb)
    print(f"{'all queries: p50 / p95':<46}{f'{p50:.1f} / {p95:.1f}':>14}{duck_p50:>15.1f}")
    print(
        f"rows in the tables read: {rows_scanned:,}; Trino p50 / DuckDB p50 = {p50 / duck_p50:.2f}"
    )
    print(orjson.dumps({
        "bench": "trino", "tables": len(TABLES), "rows_scanned": rows_scanned,
        "query_p50_ms": round(p50, 1), "query_p95_ms": round(p95, 1),
        "baseline": {"duckdb_p50_ms": round(duck_p50, 1)},
    }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
