"""Reading the processes' Prometheus endpoints, and the arithmetic over two scrapes.

A scrape is ``{metric: {labels: value}}``. Counters become per-second rates between two scrapes
of the same process (a counter that went down means the process restarted: its new value is
the increase, as Prometheus's ``rate()`` treats resets). Histograms become quantiles by linear
interpolation inside the bucket that holds the rank, like ``histogram_quantile()``, over the
observations made between the two scrapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]
INF = float("inf")


def parse(text: str) -> Samples:
    """The samples of a Prometheus text exposition, by metric name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((str(k), str(v)) for k, v in sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = float(sample.value)
    return samples


@dataclass(frozen=True)
class Scrape:
    """One scrape of one target: its samples, or why there are none."""

    target: str
    url: str
    at: float  # unix time, seconds
    samples: Samples | None
    error: str | None = None


@dataclass(frozen=True)
class Interval:
    """Two successful scrapes of the same target."""

    before: Samples
    after: Samples
    seconds: float


def _matches(labels: Labels, where: Mapping[str, str] | None) -> bool:
    if not where:
        return True
    found = dict(labels)
    return all(found.get(k) == v for k, v in where.items())


def _label(labels: Labels, by: str | None) -> str:
    return dict(labels).get(by, "") if by else ""


def increase(before: float | None, after: float) -> float:
    """A counter's increase between two scrapes; a decrease is a restart from zero."""
    if before is None or after < before:
        return after
    return after - before


def totals(
    samples: Samples, name: str, by: str | None = None, where: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Sum of a metric's samples, grouped by the value of label ``by`` ("" when None)."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        if _matches(labels, where):
            key = _label(labels, by)
            out[key] = out.get(key, 0.0) + value
    return out


def rates(
    intervals: Iterable[Interval],
    name: str,
    by: str | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, float] | None:
    """Per-second increase of a counter, summed over targets; None without any interval."""
    out: dict[str, float] = {}
    seen = False
    for interval in intervals:
        if interval.seconds <= 0:
            continue
        seen = True
        before = interval.before.get(name, {})
        for labels, value in interval.after.get(name, {}).items():
            if _matches(labels, where):
                key = _label(labels, by)
                delta = increase(before.get(labels), value) / interval.seconds
                out[key] = out.get(key, 0.0) + delta
    return out if seen else None


def buckets(
    samples: Samples, name: str, by: str | None = None, where: Mapping[str, str] | None = None
) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of histogram ``name`` (``le`` -> count), grouped by ``by``."""
    out: dict[str, dict[float, float]] = {}
    for labels, value in samples.get(f"{name}_bucket", {}).items():
        if not _matches(labels, where):
            continue
        le = float(dict(labels)["le"])
        group = out.setdefault(_label(labels, by), {})
        group[le] = group.get(le, 0.0) + value
    return out


def bucket_increase(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """Observations between two scrapes, per bucket (all of ``after`` after a restart)."""
    if after.get(INF, 0.0) < before.get(INF, 0.0):
        return dict(after)
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a histogram given as cumulative counts per upper bound.

    Linear interpolation within the bucket holding rank ``q * n``; the first bucket starts at 0;
    a rank in the +Inf bucket answers the highest finite bound. None with no observations.
    """
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    total = cumulative[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = cumulative[upper]
        if count >= rank and count > below:
            if upper == INF:
                return lower
            if upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def latencies(
    intervals: list[Interval],
    latest: list[Samples],
    name: str,
    by: str | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """p50 and p99 of a histogram per group: over the last interval's observations when there
    were any (``basis: interval``), else over everything since the processes started
    (``basis: cumulative``)."""
    recent: dict[str, dict[float, float]] = {}
    for interval in intervals:
        before = buckets(interval.before, name, by, where)
        for group, after in buckets(interval.after, name, by, where).items():
            merged = recent.setdefault(group, {})
            for le, count in bucket_increase(before.get(group, {}), after).items():
                merged[le] = merged.get(le, 0.0) + count
    overall: dict[str, dict[float, float]] = {}
    for samples in latest:
        for group, after in buckets(samples, name, by, where).items():
            merged = overall.setdefault(group, {})
            for le, count in after.items():
                merged[le] = merged.get(le, 0.0) + count
    out: dict[str, dict[str, Any]] = {}
    for group, cumulative in overall.items():
        window = recent.get(group, {})
        basis, chosen = "interval", window
        if not window or window.get(INF, 0.0) <= 0:
            basis, chosen = "cumulative", cumulative
        out[group] = {
            "p50": quantile(0.5, chosen),
            "p99": quantile(0.99, chosen),
            "count": chosen.get(INF, 0.0),
            "basis": basis,
        }
    return out


async def scrape(session: aiohttp.ClientSession, target: str, url: str, timeout_s: float) -> Scrape:
    """One scrape; a failure is data (the panel shows the target as down), never an exception."""
    at = time.time()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            response.raise_for_status()
            text = await response.text()
        return Scrape(target, url, at, parse(text))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Scrape(target, url, at, None, f"{type(exc).__name__}: {exc}".rstrip(": "))


async def scrape_all(
    session: aiohttp.ClientSession, targets: Mapping[str, str], timeout_s: float
) -> list[Scrape]:
    """Every target, concurrently, in the order given."""
    return list(
        await asyncio.gather(
            *(scrape(session, name, url, timeout_s) for name, url in targets.items())
        )
    )
