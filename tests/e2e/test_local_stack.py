"""`streampulse up` end to end: the whole pipeline on this machine, the dashboard in a browser.

Kafka, the replay (live Jetstream is made unreachable), the model server with the offline
defaults, ingest, enrich, the Flink job writing Paimon, and the dashboard all start as real
processes. The test waits for "all stages running", then for the content tables to fill,
checks `streampulse status`, the stack's resident memory, one post's trace across the stages,
and that the dashboard, opened in headless Chromium, shows trending entities and toxicity
figures equal to the Paimon tables (read at the same snapshot). `streampulse down`, from
another process, stops everything; no process is left. A screenshot is kept as an artifact.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

from streampulse.lakehouse.reading import Lakehouse
from streampulse.local.ports import free_port
from streampulse.local.runs import RunRecord, alive
from streampulse.settings import PaimonSettings
from tests.harness.browser import Element, by_testid, dump_dom, require_chromium, screenshot
from tests.harness.flink import wait_until
from tests.harness.processes import ManagedProcess

pytestmark = pytest.mark.e2e

MEMORY_LIMIT_BYTES = 6 * 1024**3
ARTIFACTS = Path(os.environ.get("STREAMPULSE_TEST_ARTIFACTS_DIR", "test-artifacts"))
TOP_N = 10
WINDOW_MIN = 60


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and every process below it (the JVMs the stages start)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    total, todo = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except OSError:
            continue
    return total


def _content_rows(lakehouse: Lakehouse, window_start: str) -> tuple[list[tuple[str, ...]], ...]:
    """Trending entities of the window the page shows, and toxicity by language over the newest
    hour, computed here from the tables with SQL of the test's own."""
    entities = lakehouse.query(
        f"""SELECT entity, label, posts, authors FROM trending_entities
        WHERE window_start = TIMESTAMP '{window_start.rstrip("Z").replace("T", " ")}'
        ORDER BY posts DESC, authors DESC, entity, label LIMIT {TOP_N}"""
    ).table.to_pylist()
    toxicity = lakehouse.query(
        f"""SELECT lang, SUM(posts) AS posts, SUM(toxic_posts) AS toxic,
          SUM(mean_toxicity * posts) / SUM(posts) AS mean
        FROM toxicity_per_minute
        WHERE window_start > (SELECT MAX(window_start) FROM toxicity_per_minute)
          - INTERVAL {WINDOW_MIN} MINUTE
        GROUP BY lang ORDER BY posts DESC, lang LIMIT {TOP_N}"""
    ).table.to_pylist()
    return (
        [(r["entity"], r["label"], str(r["posts"]), str(r["authors"])) for r in entities],
        [(r["lang"], str(r["posts"]), str(r["toxic"]), f"{r['mean']:.3f}") for r in toxicity],
    )


def _shown(dom: str) -> tuple[str, list[tuple[str, ...]], list[tuple[str, ...]]]:
    table: Element = by_testid(dom, "trending-entities")[0]
    entities = [
        tuple(r.attrs[k] for k in ("data-entity", "data-label", "data-posts", "data-authors"))
        for r in by_testid(dom, "trending-entity-row")
    ]
    toxicity = [(r.attrs["data-lang"], r.cells[1], r.cells[2], r.cells[4])
                for r in by_testid(dom, "toxicity-row")]  # fmt: skip
    return table.attrs["data-window-start"], entities, toxicity


def _snapshots(lakehouse: Lakehouse) -> tuple[int | None, ...]:
    return tuple(lakehouse.snapshot_id(t) for t in ("trending_entities", "toxicity_per_minute"))


def test_up_runs_the_pipeline_and_the_dashboard_shows_the_tables(
    tmp_path: Path, jetstream_data_dir: Path
) -> None:
    require_chromium()
    state = tmp_path / "state"
    dashboard_port = free_port()
    env = {
        "STREAMPULSE_LOCAL__STATE_DIR": str(state),
        "STREAMPULSE_LOCAL__KAFKA_PORT": str(free_port()),
        "STREAMPULSE_LOCAL__KAFKA_HEAP_MB": "512",
        "STREAMPULSE_LOCAL__STATUS_EVERY_S": "5",
        "STREAMPULSE_DASHBOARD__PORT": str(dashboard_port),
        "STREAMPULSE_DASHBOARD__REFRESH_S": "2",
        "STREAMPULSE_TELEMETRY__TRACE_SAMPLE_RATIO": "1.0",
        # a closed local port: "live Jetstream" is unreachable, deterministically
        "STREAMPULSE_JETSTREAM__ENDPOINTS": f'["ws://127.0.0.1:{free_port()}/subscribe"]',
    }
    up = ManagedProcess.streampulse(["up"], env, tmp_path / "up.log")
    started = time.monotonic()
    pids: list[int] = []
    try:
        up.wait_for_output("live Jetstream is NOT reachable", timeout_s=120)
        up.wait_for_output("all stages running", timeout_s=900)
        ready_after = time.monotonic() - started
        record = RunRecord.read(state)
        assert record is not None
        assert record.ready
        assert set(record.stages) == {
            "kafka", "replay", "models", "ingest", "enrich", "flink", "dashboard",
        }  # fmt: skip
        pids = record.pids()

        lakehouse = Lakehouse.open(PaimonSettings(), state / "warehouse")
        # the job publishes every table with an empty snapshot at its start: wait for rows
        filled = {"enriched_posts": "event_id", "trending_entities": "entity",
                  "toxicity_per_minute": "lang"}  # fmt: skip
        wait_until(
            lambda: {t: lakehouse.read(t, [c]).num_rows for t, c in filled.items()},
            lambda rows: all(rows.values()),
            300,
            "content tables filled",
        )
        filled_after = time.monotonic() - started - ready_after
        print(
            f"all stages running after {ready_after:.0f}s, tables filled {filled_after:.0f}s later"
        )

        status = ManagedProcess.streampulse(["status"], env, tmp_path / "status.log")
        assert status.wait(timeout_s=60) == 0, status.output()
        report = status.output()
        assert "all stages running" in report
        for stage in record.stages:
            assert f"{stage:<10} running" in report, report

        rss = _tree_rss_bytes(up.process.pid)
        print(f"resident memory of the stack: {rss / 1024**3:.2f} GiB")
        assert rss < MEMORY_LIMIT_BYTES
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "local-stack.json").write_text(
            json.dumps({
                "all_stages_running_s": round(ready_after, 1),
                "tables_filled_after_s": round(filled_after, 1),
                "resident_memory_gib": round(rss / 1024**3, 2),
            })
        )  # fmt: skip

        # The page against the tables, read between two equal snapshots of both tables.
        url = f"http://127.0.0.1:{dashboard_port}/"
        profiles = tmp_path / "chromium"
        for _attempt in range(8):
            before = _snapshots(lakehouse)
            dom = dump_dom(url, profiles)
            if _snapshots(lakehouse) != before:
                continue
            window_start, entities, toxicity = _shown(dom)
            if not entities or not toxicity:
                continue
            expected_entities, expected_toxicity = _content_rows(lakehouse, window_start)
            assert entities == expected_entities
            assert toxicity == expected_toxicity
            break
        else:
            raise AssertionError("no quiet moment between commits to compare the page with")
        shot = screenshot(url, ARTIFACTS / "dashboard-local-stack.png", profiles)
        assert shot.stat().st_size > 20_000

        traces = [
            json.loads(line)
            for path in (state / "traces").glob("*.jsonl")
            for line in path.read_text().splitlines()
        ]
        services: dict[str, set[str]] = defaultdict(set)
        for span in traces:
            services[span["trace_id"]].add(span["service"])
        complete = {"streampulse-ingest", "streampulse-enrich", "streampulse-model-server"}
        assert any(complete <= found for found in services.values()), dict(services)

        down = ManagedProcess.streampulse(["down"], env, tmp_path / "down.log")
        assert down.wait(timeout_s=180) == 0, down.output()
        assert "every process started by `up` has exited" in down.output()
        assert up.wait(timeout_s=60) == 0
        assert [pid for pid in pids if alive(pid)] == []
        assert RunRecord.read(state) is None
    finally:
        up.stop(timeout_s=120)
