"""The 'Pipeline' half of the dashboard: the processes' metrics, turned into what to look at.

Each poll scrapes every target; rates and latency quantiles are computed between this poll and
the previous successful one of the same target, and summed over targets (several model servers
add up). Gauges that say how far behind something is (ingest lag) take the worst target. The
metric names are the stages' own (``streampulse_<stage>_...``, see each stage's ``metrics.py``),
so a panel appears as soon as any target exports its stage's metrics, whatever the target's name.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from streampulse.dashboard.scraping import Interval, Samples, Scrape, latencies, rates, totals
from streampulse.dashboard.times import iso_ms

HISTORY_POINTS = 60
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}
TOP_COLLECTIONS = 6


def _sum(values: dict[str, float] | None) -> float | None:
    return None if values is None else round(sum(values.values()), 3)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _has_stage(latest: list[Samples], prefix: str) -> bool:
    return any(name.startswith(prefix) for samples in latest for name in samples)


def _gauge(latest: list[Samples], name: str, how: str = "max") -> float | None:
    values = [v for samples in latest for v in samples.get(name, {}).values()]
    if not values:
        return None
    return max(values) if how == "max" else sum(values)


def _quantiles(summary: dict[str, Any] | None, scale: float = 1.0) -> dict[str, Any] | None:
    if summary is None:
        return None
    p50, p99 = summary["p50"], summary["p99"]
    return {
        "p50": None if p50 is None else round(p50 * scale, 3),
        "p99": None if p99 is None else round(p99 * scale, 3),
        "count": int(summary["count"]),
        "basis": summary["basis"],
    }


def ingest_view(intervals: list[Interval], latest: list[Samples]) -> dict[str, Any] | None:
    """Events in and produced per second, by collection; lag; Kafka ack latency (ms)."""
    if not _has_stage(latest, "streampulse_ingest_"):
        return None
    events = rates(intervals, "streampulse_ingest_events_total", by="collection")
    by_collection = sorted((events or {}).items(), key=lambda item: (-item[1], item[0]))
    connected = _gauge(latest, "streampulse_ingest_connected")
    return {
        "events_per_s": _sum(events),
        "by_collection": [
            {"collection": name, "per_s": round(rate, 3)}
            for name, rate in by_collection[:TOP_COLLECTIONS]
        ],
        "produced_per_s": _sum(rates(intervals, "streampulse_ingest_produced_total")),
        "received_bytes_per_s": _sum(rates(intervals, "streampulse_ingest_received_bytes_total")),
        "events_total": int(
            sum(sum(totals(s, "streampulse_ingest_events_total").values()) for s in latest)
        ),
        "lag_s": _round(_gauge(latest, "streampulse_ingest_lag_seconds"), 1),
        "connected": None if connected is None else connected >= 1,
        "reconnects_total": int(
            sum(sum(totals(s, "streampulse_ingest_reconnects_total").values()) for s in latest)
        ),
        "ack_latency_ms": _quantiles(
            latencies(intervals, latest, "streampulse_ingest_ack_latency_seconds").get(""), 1000
        ),
    }


def enrich_view(intervals: list[Interval], latest: list[Samples]) -> dict[str, Any] | None:
    """Posts consumed and enriched per second, gateway calls, breaker, per-model latency (ms)."""
    if not _has_stage(latest, "streampulse_enrich_"):
        return None
    requests = rates(intervals, "streampulse_enrich_model_requests_total", by="outcome")
    breaker = _gauge(latest, "streampulse_enrich_breaker_state")
    paused = _gauge(latest, "streampulse_enrich_paused")
    model_latency = latencies(
        intervals, latest, "streampulse_enrich_model_request_seconds", by="model"
    )
    return {
        "consumed_per_s": _sum(rates(intervals, "streampulse_enrich_consumed_total")),
        "by_outcome": {
            k: round(v, 3)
            for k, v in (
                rates(intervals, "streampulse_enrich_consumed_total", by="outcome") or {}
            ).items()
        },
        "enriched_per_s": _sum(rates(intervals, "streampulse_enrich_enriched_total")),
        "model_requests_per_s": _sum(requests),
        "model_failures_per_s": None
        if requests is None
        else round(sum(v for k, v in requests.items() if k != "ok"), 3),
        "retries_per_s": _sum(rates(intervals, "streampulse_enrich_retries_total")),
        "breaker": None if breaker is None else BREAKER_STATES.get(int(breaker), str(breaker)),
        "paused": None if paused is None else paused >= 1,
        "model_latency_ms": {
            model: _quantiles(summary, 1000) for model, summary in sorted(model_latency.items())
        },
        "cycle_ms": _quantiles(
            latencies(intervals, latest, "streampulse_enrich_cycle_seconds").get(""), 1000
        ),
        "end_to_end_ms": _quantiles(
            latencies(intervals, latest, "streampulse_enrich_end_to_end_seconds").get(""), 1000
        ),
    }


def models_view(intervals: list[Interval], latest: list[Samples]) -> dict[str, Any] | None:
    """Per model: texts and requests per second, batch sizes, inference and request latency."""
    if not _has_stage(latest, "streampulse_serving_"):
        return None
    texts = rates(intervals, "streampulse_serving_texts_total", by="model")
    requests = rates(intervals, "streampulse_serving_requests_total", by="model")
    errors = rates(intervals, "streampulse_serving_errors_total", by="model")
    batch = latencies(intervals, latest, "streampulse_serving_batch_size", by="model")
    inference = latencies(intervals, latest, "streampulse_serving_inference_seconds", by="model")
    request = latencies(intervals, latest, "streampulse_serving_request_seconds", by="model")
    wait = latencies(intervals, latest, "streampulse_serving_queue_wait_seconds", by="model")
    queued: dict[str, float] = {}
    for samples in latest:
        for model, value in totals(samples, "streampulse_serving_queued_texts", by="model").items():
            queued[model] = queued.get(model, 0.0) + value
    names = sorted(set(queued) | set(batch) | set(texts or {}) | set(requests or {}))
    return {
        "texts_per_s": _sum(texts),
        "requests_per_s": _sum(requests),
        "errors_per_s": _sum(errors),
        "by_model": [
            {
                "model": name,
                "texts_per_s": None if texts is None else round(texts.get(name, 0.0), 3),
                "requests_per_s": None if requests is None else round(requests.get(name, 0.0), 3),
                "batch_size": _quantiles(batch.get(name)),
                "inference_ms": _quantiles(inference.get(name), 1000),
                "request_ms": _quantiles(request.get(name), 1000),
                "queue_wait_ms": _quantiles(wait.get(name), 1000),
                "queued": int(queued.get(name, 0)),
            }
            for name in names
        ],
    }


def dead_letters_view(intervals: list[Interval], latest: list[Samples]) -> dict[str, Any]:
    """Dead letters by stage and reason: totals since the processes started, and per second."""
    name = "streampulse_dead_letters_total"
    counts: dict[tuple[str, str], float] = {}
    for samples in latest:
        for labels, value in samples.get(name, {}).items():
            found = dict(labels)
            key = (found.get("stage", ""), found.get("reason", ""))
            counts[key] = counts.get(key, 0.0) + value
    per_s: dict[tuple[str, str], float] | None = None
    if intervals:
        per_s = {}
        for stage in {k[0] for k in counts}:
            for reason, rate in (
                rates(intervals, name, by="reason", where={"stage": stage}) or {}
            ).items():
                per_s[(stage, reason)] = rate
    rows = [
        {
            "stage": stage,
            "reason": reason,
            "total": int(total),
            "per_s": None if per_s is None else round(per_s.get((stage, reason), 0.0), 3),
        }
        for (stage, reason), total in sorted(counts.items(), key=lambda item: -item[1])
    ]
    return {
        "total": int(sum(counts.values())),
        "per_s": None if per_s is None else round(sum(per_s.values()), 3),
        "rows": rows,
    }


class PipelineMonitor:
    """Keeps the previous scrape of each target and a short history of the headline rates."""

    def __init__(self, history_points: int = HISTORY_POINTS) -> None:
        self._previous: dict[str, Scrape] = {}
        self._history: deque[dict[str, Any]] = deque(maxlen=history_points)

    def update(
        self,
        scrapes: list[Scrape],
        checkpoint: dict[str, Any] | None,
        consumer_lag: dict[str, Any] | None,
        now: float,
    ) -> dict[str, Any]:
        """The pipeline payload for this poll."""
        intervals: list[Interval] = []
        latest: list[Samples] = []
        for scrape in scrapes:
            if scrape.samples is None:
                continue
            latest.append(scrape.samples)
            before = self._previous.get(scrape.target)
            if before is not None and before.samples is not None and scrape.at > before.at:
                intervals.append(Interval(before.samples, scrape.samples, scrape.at - before.at))
            self._previous[scrape.target] = scrape
        view: dict[str, Any] = {
            "generated_at": iso_ms(int(now * 1000)),
            "interval_s": round(max(i.seconds for i in intervals), 2) if intervals else None,
            "targets": [
                {
                    "name": s.target,
                    "url": s.url,
                    "up": s.samples is not None,
                    "error": s.error,
                    "scraped_at": iso_ms(int(s.at * 1000)),
                }
                for s in scrapes
            ],
            "ingest": ingest_view(intervals, latest),
            "enrich": enrich_view(intervals, latest),
            "models": models_view(intervals, latest),
            "dead_letters": dead_letters_view(intervals, latest),
            "consumer_lag": consumer_lag,
            "checkpoint": checkpoint,
        }
        if intervals:
            self._history.append(
                {
                    "at": view["generated_at"],
                    "ingest_events_per_s": (view["ingest"] or {}).get("events_per_s"),
                    "ingest_lag_s": (view["ingest"] or {}).get("lag_s"),
                    "enriched_per_s": (view["enrich"] or {}).get("enriched_per_s"),
                    "model_texts_per_s": (view["models"] or {}).get("texts_per_s"),
                    "dead_letters_per_s": view["dead_letters"]["per_s"],
                }
            )
        view["history"] = list(self._history)
        return view
