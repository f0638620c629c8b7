"""What the local stack shows about itself: per-stage rates, lag and health, from the stages'
own /metrics endpoints and Flink's REST API. Used by ``streampulse up`` (a live block, redrawn)
and ``streampulse status`` (printed once, from another terminal)."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from streampulse.enrich.breaker import BreakerState

Samples = dict[str, dict[str, float]]

_HTTP_TIMEOUT_S = 2.0


def scrape(url: str) -> Samples:
    """``{metric: {comma-joined label values: value}}`` from a /metrics endpoint."""
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = ",".join(str(v) for v in sample.labels.values())
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def human_duration(seconds: float) -> str:
    """12.3s, 4.5m, 2.0h or 145.1d: lag reads at a glance (replays of old data lag by days)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


@dataclass
class Rates:
    """Counters seen at successive scrapes, turned into per-second rates."""

    previous: dict[str, float] = field(default_factory=dict)
    previous_at: float = 0.0

    def update(self, counts: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        elapsed = now - self.previous_at if self.previous_at else 0.0
        rates = {
            key: (value - self.previous.get(key, 0.0)) / elapsed if elapsed else 0.0
            for key, value in counts.items()
        }
        self.previous, self.previous_at = counts, now
        return rates


def _total(samples: Samples, metric: str, stage: str | None = None) -> float:
    values = samples.get(metric, {})
    return sum(v for k, v in values.items() if stage is None or k.split(",")[0] == stage)


def _short(collection: str) -> str:
    return collection.rsplit(".", 1)[-1]


def progress_line(samples: Samples, rates: Rates) -> str:
    """Ingest: events/s in total and by collection, dead letters, lag."""
    per_collection = rates.update(samples.get("streampulse_ingest_events_total", {}))
    total = sum(per_collection.values())
    top = sorted(per_collection.items(), key=lambda item: -item[1])[:5]
    by_collection = " ".join(f"{_short(name)} {rate:.0f}" for name, rate in top)
    lag = samples.get("streampulse_ingest_lag_seconds", {}).get("", 0.0)
    dead = _total(samples, "streampulse_dead_letters_total", "ingest")
    return (
        f"{total:7.0f} ev/s | {by_collection} | dead letters {dead:.0f} | lag {human_duration(lag)}"
    )


def enrich_line(samples: Samples, rates: Rates) -> str:
    """Enrich: posts/s enriched, breaker state, dead letters (consumer lag: the dashboard)."""
    rate = rates.update({"enriched": _total(samples, "streampulse_enrich_enriched_total")})
    state = BreakerState(int(_total(samples, "streampulse_enrich_breaker_state")))
    breaker = state.name.lower().replace("_", "-")
    dead = _total(samples, "streampulse_dead_letters_total", "enrich")
    return f"{rate['enriched']:7.0f} posts/s | breaker {breaker} | dead letters {dead:.0f}"


def models_line(samples: Samples, rates: Rates) -> str:
    """Model server: texts/s, mean batch size and mean request latency since the last look."""
    per_second = rates.update({
        "texts": _total(samples, "streampulse_serving_texts_total"),
        "batch_sum": _total(samples, "streampulse_serving_batch_size_sum"),
        "batches": _total(samples, "streampulse_serving_batch_size_count"),
        "seconds_sum": _total(samples, "streampulse_serving_request_seconds_sum"),
        "requests": _total(samples, "streampulse_serving_request_seconds_count"),
    })  # fmt: skip
    batch = per_second["batch_sum"] / per_second["batches"] if per_second["batches"] else 0.0
    latency_ms = (
        1000 * per_second["seconds_sum"] / per_second["requests"] if per_second["requests"] else 0.0
    )
    return f"{per_second['texts']:7.0f} texts/s | batch {batch:.1f} | {latency_ms:.0f} ms/request"


@dataclass(frozen=True)
class FlinkProgress:
    state: str
    completed_checkpoints: int
    last_checkpoint_age_s: float | None
    tasks_running: int
    tasks_total: int

    @property
    def all_tasks_running(self) -> bool:
        """Every task deployed and running (state restored, generated code compiled)."""
        return 0 < self.tasks_total == self.tasks_running


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310 - loopback
        loaded: dict[str, object] = json.loads(response.read())
        return loaded


def fetch_flink_progress(rest_url: str) -> FlinkProgress | None:
    """The job's state and checkpoints from Flink's REST API; None before a job exists."""
    jobs = _get_json(f"{rest_url}/jobs/overview").get("jobs")
    if not isinstance(jobs, list) or not jobs:
        return None
    job = jobs[0]
    checkpoints = _get_json(f"{rest_url}/jobs/{job['jid']}/checkpoints")
    counts = checkpoints.get("counts")
    completed = int(counts.get("completed", 0)) if isinstance(counts, dict) else 0
    latest = checkpoints.get("latest")
    age = None
    if isinstance(latest, dict) and isinstance(latest.get("completed"), dict):
        acked_ms = latest["completed"].get("latest_ack_timestamp")
        if isinstance(acked_ms, int | float) and acked_ms > 0:
            age = max(0.0, time.time() - acked_ms / 1000)
    tasks = job.get("tasks")
    running, total = (
        (int(tasks.get("running", 0)), int(tasks.get("total", 0)))
        if isinstance(tasks, dict)
        else (0, 0)
    )
    return FlinkProgress(str(job.get("state", "?")), completed, age, running, total)


def flink_line(progress: FlinkProgress | None) -> str:
    if progress is None:
        return "starting ..."
    age = progress.last_checkpoint_age_s
    last = f", last {human_duration(age)} ago" if age is not None else ""
    return f"{progress.state} | {progress.completed_checkpoints} checkpoints{last}"


_LINES = {"ingest": progress_line, "enrich": enrich_line, "models": models_line}


@dataclass
class StatusBoard:
    """One line per stage, from a fresh scrape of each stage's /metrics and Flink's REST API."""

    targets: dict[str, str] = field(default_factory=dict)
    rates: dict[str, Rates] = field(default_factory=dict)
    flink_rest_url: str = ""
    _drawn: int = 0

    def watch(self, stage: str, metrics_url: str) -> None:
        if stage in _LINES:
            self.targets[stage] = metrics_url
            self.rates[stage] = Rates()

    def lines(self) -> list[str]:
        out = []
        for stage, url in self.targets.items():
            try:
                text = _LINES[stage](scrape(url), self.rates[stage])
            except OSError:
                text = "starting ..."
            out.append(f"{stage:<10} {text}")
        if self.flink_rest_url:
            try:
                text = flink_line(fetch_flink_progress(self.flink_rest_url))
            except (OSError, ValueError):
                text = "not answering"
            out.append(f"{'flink':<10} {text}")
        return out

    def show(self, interactive: bool) -> None:
        """Redraw the block in place on a terminal; print it as new lines otherwise."""
        lines = self.lines()
        if interactive and self._drawn:
            sys.stdout.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the block's start, clear
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self._drawn = len(lines)
