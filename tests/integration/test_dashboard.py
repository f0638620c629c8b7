"""``streampulse dashboard`` as a real process over a real Paimon warehouse, seen by a browser.

The warehouse is written with pypaimon, table for table as the Flink job declares them, in
several commits (upserts included), with hostile text in the data. The API's numbers are checked
exactly; headless Chromium then loads the page and the trending entities and toxicity rows in
its DOM must be the same numbers, with the hostile text shown as text, never as markup.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from streampulse.dashboard.lag import ConsumerLag
from streampulse.kafka import consumer_config, ensure_topics, producer_config
from streampulse.local.ports import free_port
from streampulse.settings import KafkaSettings
from tests.harness.browser import by_testid, dump_dom, require_chromium, screenshot, tags
from tests.harness.dashboard_data import (
    ACK_MS,
    HOSTILE_ENTITY,
    HOSTILE_TEXT,
    POST,
    fill_warehouse,
    get_json,
    start_dashboard,
    stop_cleanly,
    tox,
    wait_dom,
    wait_json,
)
from tests.harness.warehouse import Warehouse

pytestmark = pytest.mark.integration


class _Routes(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, Callable[[], tuple[str, bytes]]]] = {}

    def do_GET(self) -> None:
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        content_type, body = route()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_routes() -> Iterator[tuple[str, dict[str, Callable[[], tuple[str, bytes]]]]]:
    """A loopback HTTP server answering GETs from a dict of routes the test fills in."""
    handler = type("Handler", (_Routes,), {"routes": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.routes
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_shows_the_tables_and_the_metrics(
    tmp_path: Path, http_routes: tuple[str, dict[str, Callable[[], tuple[str, bytes]]]]
) -> None:
    require_chromium()
    warehouse = Warehouse(tmp_path / "warehouse")
    fill_warehouse(warehouse)

    # A process's /metrics (stage metric names) and a Flink REST API, on loopback.
    base, routes = http_routes
    registry = CollectorRegistry()
    events = Counter("streampulse_ingest_events_total", "events", ["collection"], registry=registry)
    Gauge("streampulse_ingest_lag_seconds", "lag", registry=registry).set(2.5)
    dead = Counter("streampulse_dead_letters_total", "dead", ["stage", "reason"], registry=registry)
    events.labels(POST).inc(100)
    dead.labels("ingest", "invalid_utf8").inc(3)
    routes["/metrics"] = lambda: ("text/plain; version=0.0.4", generate_latest(registry))
    routes["/jobs/overview"] = lambda: (
        "application/json",
        json.dumps(
            {"jobs": [{"jid": "j1", "name": "streampulse-aggregation", "state": "RUNNING"}]}
        ).encode(),
    )
    routes["/jobs/j1/checkpoints"] = lambda: (
        "application/json",
        json.dumps(
            {
                "counts": {"completed": 12, "failed": 1, "in_progress": 0},
                "latest": {"completed": {"id": 12, "latest_ack_timestamp": ACK_MS}},
            }
        ).encode(),
    )

    process, url = start_dashboard(
        tmp_path,
        {
            "STREAMPULSE_PAIMON__WAREHOUSE": str(tmp_path / "warehouse"),
            "STREAMPULSE_DASHBOARD__METRICS_TARGETS": json.dumps(
                {"ingest": f"{base}/metrics", "enrich": f"http://127.0.0.1:{free_port()}/metrics"}
            ),
            "STREAMPULSE_DASHBOARD__FLINK_REST_URL": base,
            "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        },
    )
    try:
        assert get_json(url + "healthz") == {"status": "ok"}
        content = wait_json(
            url + "api/content", lambda c: c["state"] == "ready", 60, "content ready"
        )
        assert content["warehouse"] == str(tmp_path / "warehouse")
        assert set(content["snapshots"]) == {
            "volume_per_minute",
            "toxicity_per_minute",
            "trending_entities",
            "trending_hashtags",
            "anomalies",
            "post_engagement",
            "author_activity",
            "enriched_posts",
        }
        assert content["snapshots"]["volume_per_minute"]["id"] == 2

        posts = content["posts_per_minute"]
        assert (posts["newest"], posts["minutes"]) == ("2025-06-01T14:04:00Z", 5)
        assert [p["posts"] for p in posts["points"]] == [6, 7, 8, 9, 10]
        assert (posts["latest_posts"], posts["total_posts"], posts["mean_per_minute"]) == (
            10,
            40,
            8.0,
        )

        toxicity = content["toxicity_by_language"]
        assert (toxicity["since"], toxicity["until"], toxicity["languages"]) == (
            "2025-06-01T14:01:00Z",
            "2025-06-01T14:04:00Z",
            3,
        )
        assert toxicity["rows"] == [
            {
                "lang": "en",
                "posts": 30,
                "toxic_posts": 5,
                "toxic_share": round(5 / 30, 6),
                "mean_toxicity": round((10 * 0.23 + 20 * 0.1) / 30, 6),
                "p95_toxicity": 0.65,
            },
            {
                "lang": "pt",
                "posts": 6,
                "toxic_posts": 0,
                "toxic_share": 0.0,
                "mean_toxicity": 0.05,
                "p95_toxicity": 0.1,
            },
            {
                "lang": "ja",
                "posts": 4,
                "toxic_posts": 1,
                "toxic_share": 0.25,
                "mean_toxicity": 0.3,
                "p95_toxicity": 0.9,
            },
        ]

        entities = content["trending_entities"]
        assert (entities["window_start"], entities["window_end"]) == (
            "2025-06-01T13:50:00Z",
            "2025-06-01T14:05:00Z",
        )
        expected_entities = [
            ("lisbon", "LOC", 12, 7),
            ("bluesky", "ORG", 12, 3),
            (HOSTILE_ENTITY, "ORG", 9, 9),
            ("ünïcödé 🎉 \u202ertl", "MISC", 2, 1),
        ]
        assert [
            (r["entity"], r["label"], r["posts"], r["authors"]) for r in entities["rows"]
        ] == expected_entities
        hashtags = content["trending_hashtags"]
        assert [(r["hashtag"], r["posts"], r["authors"]) for r in hashtags["rows"]] == [
            ("rustlang", 5, 4),
            ("bsky", 3, 3),
        ]
        assert [
            (r["metric"], r["window_start"], r["z_score"]) for r in content["anomalies"]["rows"]
        ] == [
            ("volume", "2025-06-01T14:03:00Z", 20.0),
            ("toxicity", "2025-06-01T14:02:00Z", 5.0),
        ]
        viral = content["viral_posts"]["rows"]
        assert [
            (r["post_uri"].rsplit("/", 1)[1], r["viral_velocity"], r["text"]) for r in viral
        ] == [
            ("b", 8.25, None),  # no enriched row: no text
            ("a", 3.5, HOSTILE_TEXT),
        ]
        assert viral[1]["link"] == "https://bsky.app/profile/did:plc:author/post/a"
        bots = content["bot_accounts"]["rows"]
        assert [(r["did"], r["hour"], r["bot_score"], r["likely"]) for r in bots] == [
            ("did:plc:bot", "2025-06-01T13:00:00Z", 0.9, True),
            ("did:plc:human", "2025-06-01T14:00:00Z", 0.12, False),
        ]

        # Pipeline: two scrapes make a rate; the down target and Kafka are reported, not fatal.
        pipeline = wait_json(
            url + "api/pipeline",
            lambda p: p.get("ingest") and p["ingest"]["events_total"] == 100,
            30,
            "first scrape",
        )
        assert [(t["name"], t["up"]) for t in pipeline["targets"]] == [
            ("ingest", True),
            ("enrich", False),
        ]
        assert pipeline["ingest"]["lag_s"] == 2.5
        assert pipeline["enrich"] is None
        assert pipeline["dead_letters"]["total"] == 3
        assert pipeline["consumer_lag"]["error"].startswith("Kafka unreachable")
        checkpoint = pipeline["checkpoint"]
        assert checkpoint["source"] == "flink"
        assert (checkpoint["job_state"], checkpoint["completed"], checkpoint["failed"]) == (
            "RUNNING",
            12,
            1,
        )
        assert checkpoint["completed_at"] == "2025-06-15T15:06:40Z"
        assert checkpoint["age_s"] >= time.time() - ACK_MS / 1000 - 60
        events.labels(POST).inc(50)
        pipeline = wait_json(
            url + "api/pipeline",
            lambda p: p["ingest"]["events_total"] == 150,
            30,
            "the increase scraped",
        )
        assert pipeline["ingest"]["events_per_s"] == pytest.approx(
            50 / pipeline["interval_s"], rel=0.02
        )

        # The browser: the same numbers in the DOM, the hostile text as text.
        profiles = tmp_path / "chromium"
        dom = wait_dom(
            url,
            profiles,
            lambda d: (
                len(by_testid(d, "trending-entity-row")) == 4 and bool(by_testid(d, "toxicity-row"))
            ),
            120,
        )
        state = by_testid(dom, "content-state")[0]
        assert (state.attrs["data-state"], state.text) == ("ready", "live")
        entity_table = by_testid(dom, "trending-entities")[0]
        assert entity_table.attrs["data-window-start"] == entities["window_start"]
        shown_entities = [
            (
                r.attrs["data-entity"],
                r.attrs["data-label"],
                r.attrs["data-posts"],
                r.attrs["data-authors"],
                r.cells,
            )
            for r in by_testid(dom, "trending-entity-row")
        ]
        assert shown_entities == [
            (e, label, str(p), str(a), [e, label, str(p), str(a)])
            for e, label, p, a in expected_entities
        ]
        shown_toxicity = [(r.attrs["data-lang"], r.cells) for r in by_testid(dom, "toxicity-row")]
        assert shown_toxicity == [
            ("en", ["en", "30", "5", "16.7%", "0.143", "0.650"]),
            ("pt", ["pt", "6", "0", "0.0%", "0.050", "0.100"]),
            ("ja", ["ja", "4", "1", "25.0%", "0.300", "0.900"]),
        ]
        hashtag_cells = [r.cells for r in by_testid(dom, "trending-hashtag-row")]
        assert hashtag_cells == [["#rustlang", "5", "4"], ["#bsky", "3", "3"]]
        viral_texts = [e.text for e in by_testid(dom, "viral-post")]
        assert HOSTILE_TEXT in viral_texts[1]
        assert "img" not in tags(dom)  # the post's <img> stayed text
        assert tags(dom).count("script") == 1  # only the dashboard's own
        assert "pwned" not in dom.split("</body>")[-1]
        assert by_testid(dom, "ingest-lag")[0].text.startswith("2.5 s")
        assert by_testid(dom, "checkpoint-source")[0].text == "Flink REST API"

        shot = screenshot(url, tmp_path / "dashboard.png", profiles)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
    finally:
        if process.process.poll() is None:
            stop_cleanly(process)
        else:
            process.stop()


def test_empty_warehouse_waits_for_the_first_checkpoint(tmp_path: Path) -> None:
    require_chromium()
    path = tmp_path / "warehouse"  # not created yet: the job has not started
    process, url = start_dashboard(
        tmp_path,
        {
            "STREAMPULSE_PAIMON__WAREHOUSE": str(path),
            "STREAMPULSE_DASHBOARD__CONSUMER_GROUPS": "[]",
        },
    )
    try:
        content = get_json(url + "api/content")
        assert content["state"] == "waiting"
        assert content["message"].startswith("waiting for the first checkpoint")
        pipeline = get_json(url + "api/pipeline")
        assert pipeline["targets"] == []
        assert pipeline["consumer_lag"] is None
        assert pipeline["checkpoint"]["source"] == "paimon"
        assert pipeline["checkpoint"]["age_s"] is None

        dom = dump_dom(url, tmp_path / "chromium")
        state = by_testid(dom, "content-state")[0]
        assert state.attrs["data-state"] == "waiting"
        assert "waiting for the first checkpoint" in by_testid(dom, "content-message")[0].text
        assert "No entities yet" in by_testid(dom, "entities-body")[0].text
        assert by_testid(dom, "checkpoint-age")[0].text.startswith("\u2013")  # no age yet
        screenshot(url, tmp_path / "dashboard-waiting.png", tmp_path / "chromium")

        # The job creates its tables, then commits one: no restart needed.
        warehouse = Warehouse(path)
        warehouse.create()
        wait_json(
            url + "api/content",
            lambda c: c["state"] == "waiting" and "no table" in c["message"],
            30,
            "tables without snapshots",
        )
        warehouse.write("toxicity_per_minute", [tox(0, "en", 3, 1, 0.4, 0.8)])
        content = wait_json(
            url + "api/content", lambda c: c["state"] == "ready", 30, "the first commit"
        )
        assert content["toxicity_by_language"]["rows"][0]["posts"] == 3
        assert content["trending_entities"]["state"] == "waiting"
        pipeline = wait_json(
            url + "api/pipeline",
            lambda p: p["checkpoint"].get("table") == "toxicity_per_minute",
            30,
            "the commit as checkpoint age",
        )
        assert pipeline["checkpoint"]["age_s"] < 120
    finally:
        if process.process.poll() is None:
            stop_cleanly(process)
        else:
            process.stop()


def test_consumer_lag_from_a_real_broker(kafka_settings: KafkaSettings) -> None:
    """Log end minus committed offset, per group and topic, as the Pipeline panel shows it."""
    topic = kafka_settings.raw_topic
    ensure_topics(kafka_settings, [topic])
    producer = Producer(producer_config(kafka_settings, client_id="dashboard-test"))
    for partition, count in ((0, 7), (1, 4), (2, 1)):
        for n in range(count):
            producer.produce(topic, f"{partition}-{n}".encode(), partition=partition)
    assert producer.flush(30) == 0
    group = f"dashboard-test-{topic}"
    consumer = Consumer(consumer_config(kafka_settings, group_id=group, client_id="dashboard-test"))
    try:
        committed = [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 4)]  # none on 2
        consumer.commit(offsets=committed, asynchronous=False)
    finally:
        consumer.close()

    lag = ConsumerLag(kafka_settings, (group, "nobody-home"), timeout_s=10).read()
    assert lag == {
        "bootstrap": kafka_settings.bootstrap_servers,
        "groups": [
            {"group": group, "lag": 2, "topics": [{"topic": topic, "lag": 2, "partitions": 2}]},
            {"group": "nobody-home", "lag": 0, "topics": []},
        ],
    }
    closed = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    down = ConsumerLag(closed, (group,), timeout_s=2).read()
    assert down["groups"] == []
    assert down["error"] == f"Kafka unreachable at {closed.bootstrap_servers}"
