"""The pipeline half of the dashboard: counter rates, histogram quantiles, the assembled view."""

from __future__ import annotations

import math

import pytest

from streampulse.dashboard.checkpoints import checkpoint_view, pick_job
from streampulse.dashboard.lag import group_lag
from streampulse.dashboard.pipeline import PipelineMonitor
from streampulse.dashboard.scraping import (
    INF,
    Interval,
    Samples,
    Scrape,
    bucket_increase,
    increase,
    latencies,
    parse,
    quantile,
    rates,
    totals,
)

pytestmark = pytest.mark.unit

INGEST_TEXT = """\
# HELP streampulse_ingest_events_total Jetstream events.
# TYPE streampulse_ingest_events_total counter
streampulse_ingest_events_total{{collection="app.bsky.feed.post"}} {post}
streampulse_ingest_events_total{{collection="app.bsky.feed.like"}} {like}
# HELP streampulse_ingest_lag_seconds Lag.
# TYPE streampulse_ingest_lag_seconds gauge
streampulse_ingest_lag_seconds {lag}
# HELP streampulse_ingest_ack_latency_seconds Ack latency.
# TYPE streampulse_ingest_ack_latency_seconds histogram
streampulse_ingest_ack_latency_seconds_bucket{{le="0.01"}} {b1}
streampulse_ingest_ack_latency_seconds_bucket{{le="0.1"}} {b2}
streampulse_ingest_ack_latency_seconds_bucket{{le="+Inf"}} {b3}
streampulse_ingest_ack_latency_seconds_count {b3}
streampulse_ingest_ack_latency_seconds_sum 1.0
# HELP streampulse_dead_letters_total Dead letters.
# TYPE streampulse_dead_letters_total counter
streampulse_dead_letters_total{{stage="ingest",reason="invalid_utf8"}} {dead}
"""


def ingest_samples(
    post: float, like: float, lag: float = 1.5, b: tuple[float, float, float] = (0, 0, 0), dead=0
) -> Samples:
    return parse(
        INGEST_TEXT.format(post=post, like=like, lag=lag, b1=b[0], b2=b[1], b3=b[2], dead=dead)
    )


def test_parse_keys_samples_by_name_and_sorted_labels() -> None:
    samples = parse('m_total{b="2",a="1"} 3\nm_total{a="x",b="y"} 4\n')
    assert samples["m_total"] == {(("a", "1"), ("b", "2")): 3.0, (("a", "x"), ("b", "y")): 4.0}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(None, 5.0, 5.0), (3.0, 5.0, 2.0), (5.0, 5.0, 0.0), (10.0, 4.0, 4.0)],
    ids=["first", "growth", "flat", "restart"],
)
def test_counter_increase(before: float | None, after: float, expected: float) -> None:
    assert increase(before, after) == expected


def test_rates_sum_targets_and_treat_a_drop_as_a_restart() -> None:
    a = Interval(ingest_samples(100, 10), ingest_samples(150, 30), seconds=5.0)
    b = Interval(ingest_samples(1000, 0), ingest_samples(20, 5), seconds=10.0)  # restarted
    by_collection = rates([a, b], "streampulse_ingest_events_total", by="collection")
    assert by_collection == pytest.approx(
        {"app.bsky.feed.post": 50 / 5 + 20 / 10, "app.bsky.feed.like": 20 / 5 + 5 / 10}
    )
    total = rates([a], "streampulse_ingest_events_total")
    assert total == pytest.approx({"": 70 / 5})
    liked = rates(
        [a], "streampulse_ingest_events_total", where={"collection": "app.bsky.feed.like"}
    )
    assert liked == pytest.approx({"": 4.0})


def test_rates_without_an_interval_are_unknown_not_zero() -> None:
    assert rates([], "streampulse_ingest_events_total") is None


@pytest.mark.parametrize(
    ("q", "cumulative", "expected"),
    [
        (0.5, {0.1: 5, 0.2: 10, INF: 10}, 0.1),
        (0.99, {0.1: 5, 0.2: 10, INF: 10}, 0.1 + 0.1 * 4.9 / 5),
        (0.5, {1.0: 4, INF: 4}, 0.5),  # the first bucket starts at 0
        (0.25, {1.0: 0, 2.0: 4, INF: 4}, 1.25),  # empty buckets are skipped
        (0.99, {0.1: 1, 0.2: 1, INF: 10}, 0.2),  # in +Inf: the highest finite bound
        (0.5, {0.1: 0, INF: 0}, None),
        (0.5, {}, None),
    ],
)
def test_quantile_interpolates_like_histogram_quantile(
    q: float, cumulative: dict[float, float], expected: float | None
) -> None:
    result = quantile(q, cumulative)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert math.isclose(result, expected, rel_tol=1e-9)


def test_bucket_increase_and_restart() -> None:
    before = {0.1: 2.0, INF: 4.0}
    assert bucket_increase(before, {0.1: 5.0, INF: 9.0}) == {0.1: 3.0, INF: 5.0}
    assert bucket_increase(before, {0.1: 1.0, INF: 1.0}) == {0.1: 1.0, INF: 1.0}


def test_latencies_cover_the_interval_else_everything_so_far() -> None:
    before = ingest_samples(0, 0, b=(10, 10, 10))  # ten fast acks long ago
    after = ingest_samples(0, 0, b=(10, 20, 20))  # then ten slow ones
    name = "streampulse_ingest_ack_latency_seconds"
    recent = latencies([Interval(before, after, 5.0)], [after], name)[""]
    assert recent["basis"] == "interval"
    assert recent["count"] == 10
    assert recent["p50"] == pytest.approx(0.01 + 0.09 * 0.5)
    idle = latencies([Interval(after, after, 5.0)], [after], name)[""]
    assert idle["basis"] == "cumulative"
    assert idle["count"] == 20
    assert idle["p50"] == pytest.approx(0.01)


def test_totals_group_by_label() -> None:
    samples = ingest_samples(7, 3)
    assert totals(samples, "streampulse_ingest_events_total") == {"": 10.0}
    assert totals(samples, "streampulse_ingest_events_total", by="collection") == {
        "app.bsky.feed.post": 7.0,
        "app.bsky.feed.like": 3.0,
    }


def test_monitor_turns_two_polls_into_rates_and_reports_down_targets() -> None:
    monitor = PipelineMonitor()
    down = Scrape("enrich", "http://127.0.0.1:1/metrics", 100.0, None, "refused")
    first = monitor.update(
        [Scrape("ingest", "u", 100.0, ingest_samples(100, 50, b=(1, 1, 1), dead=2)), down],
        checkpoint=None,
        consumer_lag=None,
        now=100.0,
    )
    assert first["ingest"]["events_per_s"] is None  # one scrape: no rate yet
    assert first["ingest"]["events_total"] == 150
    assert first["dead_letters"] == {
        "total": 2,
        "per_s": None,
        "rows": [{"stage": "ingest", "reason": "invalid_utf8", "total": 2, "per_s": None}],
    }
    assert first["targets"][1] == {
        "name": "enrich",
        "url": "http://127.0.0.1:1/metrics",
        "up": False,
        "error": "refused",
        "scraped_at": "1970-01-01T00:01:40Z",
    }
    assert first["enrich"] is None
    assert first["history"] == []

    second = monitor.update(
        [
            Scrape("ingest", "u", 104.0, ingest_samples(300, 70, lag=2.25, b=(1, 11, 11), dead=6)),
            down,
        ],
        checkpoint={"source": "paimon", "age_s": 3.0},
        consumer_lag=None,
        now=104.0,
    )
    ingest = second["ingest"]
    assert second["interval_s"] == 4.0
    assert ingest["events_per_s"] == 55.0  # (200 + 20) / 4
    assert ingest["by_collection"] == [
        {"collection": "app.bsky.feed.post", "per_s": 50.0},
        {"collection": "app.bsky.feed.like", "per_s": 5.0},
    ]
    assert ingest["lag_s"] == 2.2  # rounded to 0.1 s
    assert ingest["ack_latency_ms"] == {"p50": 55.0, "p99": 99.1, "count": 10, "basis": "interval"}
    assert second["dead_letters"]["per_s"] == 1.0
    assert second["checkpoint"] == {"source": "paimon", "age_s": 3.0}
    assert second["history"] == [
        {
            "at": "1970-01-01T00:01:44Z",
            "ingest_events_per_s": 55.0,
            "ingest_lag_s": 2.2,
            "enriched_per_s": None,
            "model_texts_per_s": None,
            "dead_letters_per_s": 1.0,
        }
    ]


def test_flink_checkpoint_view_from_rest_answers() -> None:
    jobs = [
        {"jid": "old", "name": "streampulse-aggregation", "state": "CANCELED", "start-time": 5},
        {"jid": "run", "name": "streampulse-aggregation", "state": "RUNNING", "start-time": 1},
    ]
    job = pick_job(jobs)
    assert job is not None
    assert job["jid"] == "run"
    assert pick_job(jobs[:1]) == jobs[0]
    assert pick_job([]) is None
    answer = {
        "counts": {"completed": 7, "failed": 1, "in_progress": 0},
        "latest": {
            "completed": {
                "id": 7,
                "latest_ack_timestamp": 1_700_000_000_000,
                "end_to_end_duration": 120,
                "checkpointed_size": 4096,
            }
        },
    }
    view = checkpoint_view(job, answer, now=1_700_000_012.5)
    assert view == {
        "source": "flink",
        "job": "streampulse-aggregation",
        "job_id": "run",
        "job_state": "RUNNING",
        "completed": 7,
        "failed": 1,
        "in_progress": 0,
        "checkpoint_id": 7,
        "completed_at": "2023-11-14T22:13:20Z",
        "age_s": 12.5,
        "duration_ms": 120,
        "size_bytes": 4096,
    }
    none_yet = checkpoint_view(job, {"counts": {}, "latest": {"completed": None}}, now=0)
    assert none_yet["age_s"] is None
    assert none_yet["completed"] == 0


def test_consumer_lag_per_topic() -> None:
    committed = {("raw", 0): 10, ("raw", 1): 5, ("enriched", 0): 3}
    ends = {("raw", 0): 15, ("raw", 1): 5, ("enriched", 0): 2}
    assert group_lag(committed, ends) == [
        {"topic": "enriched", "lag": 0, "partitions": 1},
        {"topic": "raw", "lag": 5, "partitions": 2},
    ]
