"""The Grafana dashboards the chart ships (charts/streampulse-operator/dashboards): one per
concern, well formed, and every query names something that exists.

- PromQL: every metric is exported by the StreamPulse code (the prometheus_client registry after
  importing every module that declares metrics) or published by a third-party exporter the
  operator configures (tests/unit/external_metrics.py). Counters and histogram series are read
  through rate(), irate() or increase(); histogram buckets through histogram_quantile().
- SQL (the content dashboard's Trino panels): every table is one the Flink job writes, in
  ``lakehouse.streampulse``, and every ``$__timeFilter`` column is a column of it. These panels are
  outside the PromQL check: their truth is the Flink job's table definitions.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.harness.flink import load_flink_module
from tests.unit.external_metrics import COUNTER, EXTERNAL_METRICS, GAUGE, HISTOGRAM
from tests.unit.promql_parsing import FUNCTIONS, called_functions, metric_uses, template_expr

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "charts" / "streampulse-operator" / "dashboards"
WORKERS = REPO / "workers"
CONCERNS = ("content-intelligence", "ingestion", "ml", "kafka", "flink", "storage")
CATALOG_SCHEMA = "lakehouse.streampulse"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
RATE_FUNCTIONS = {"rate", "irate", "increase"}


@cache
def exported_metrics() -> dict[str, str]:
    """Every metric the StreamPulse processes export, name -> type, as Prometheus scrapes it."""
    declares = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*['\"]")
    for path in sorted((WORKERS / "streampulse").rglob("*.py")):
        source = path.read_text()
        if "prometheus_client" in source and declares.search(source):
            module = ".".join(path.relative_to(WORKERS).with_suffix("").parts)
            importlib.import_module(module)
    names: dict[str, str] = {}
    for family in REGISTRY.collect():
        if family.type == "counter":
            names[f"{family.name}_total"] = COUNTER
        elif family.type == "histogram":
            names[family.name] = HISTOGRAM
        elif family.type == "info":
            names[f"{family.name}_info"] = GAUGE
        else:
            names[family.name] = GAUGE
    return names


def metric_kind(name: str, known: dict[str, str]) -> str | None:
    """The type of a series name: a known metric, or a series of a known histogram."""
    if name in known:
        return known[name]
    for suffix in HISTOGRAM_SERIES:
        if name.endswith(suffix) and known.get(name.removesuffix(suffix)) == HISTOGRAM:
            return COUNTER
    return None


def promql_problems(expr: str, known: dict[str, str], *, series_only: bool = False) -> list[str]:
    """What is wrong with a PromQL expression. ``series_only``: a variable's series selector,
    which lists label values and is never plotted, so the rate() rules do not apply."""
    problems = [f"unknown function {f}()" for f in called_functions(expr) - FUNCTIONS]
    for use in metric_uses(expr):
        kind = metric_kind(use.name, known)
        if kind is None:
            problems.append(f"unknown metric {use.name}")
        elif series_only:
            continue
        elif kind == HISTOGRAM:
            problems.append(f"{use.name} is a histogram: query its _bucket, _sum or _count series")
        elif kind == COUNTER and (not use.calls or use.calls[-1] not in RATE_FUNCTIONS):
            problems.append(f"counter {use.name} outside rate(), irate() or increase()")
        if use.name.endswith("_bucket") and "histogram_quantile" not in use.calls:
            problems.append(f"{use.name} outside histogram_quantile()")
    return problems


def sql_problems(query: str, tables: dict[str, str]) -> list[str]:
    problems = []
    named = re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", query, flags=re.IGNORECASE)
    if not named:
        problems.append("no table")
    columns: set[str] = set()
    for qualified in named:
        schema, _, table = qualified.rpartition(".")
        if schema != CATALOG_SCHEMA or table not in tables:
            problems.append(f"{qualified} is not a table of {CATALOG_SCHEMA}")
            continue
        columns |= set(re.findall(r"`?(\w+)`?\s+[A-Z]", tables[table]))
    for column in re.findall(r"\$__timeFilter\((\w+)\)", query):
        if column not in columns:
            problems.append(f"$__timeFilter({column}): no such column")
    return problems


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, language, text) of every query: panel targets (``promql`` or ``sql``) and
    variable queries (``series``)."""
    for panel in walk_panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('title')!r} target {target.get('refId')}"
            if "expr" in target:
                yield where, "promql", target["expr"]
            if "rawSQL" in target:
                yield where, "sql", target["rawSQL"]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        yield f"variable ${variable['name']}", "series", template_expr(text)


def problems_of(board: dict[str, Any]) -> list[str]:
    known = exported_metrics() | EXTERNAL_METRICS
    tables = {name: definition[0] for name, definition in flink_tables().items()}
    out: list[str] = []
    for where, language, text in queries(board):
        if language == "sql":
            found = sql_problems(text, tables)
        else:
            found = promql_problems(text, known, series_only=language == "series")
        out += [f"{where}: {problem}" for problem in found]
    return out


@cache
def flink_tables() -> dict[str, tuple[str, str, str, dict[str, str]]]:
    tables: dict[str, tuple[str, str, str, dict[str, str]]] = load_flink_module(
        "streampulse_flink/tables.py", "streampulse_flink_tables"
    ).TABLES
    return tables


def load(concern: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DASHBOARDS / f"{concern}.json").read_text())
    return board


def test_one_dashboard_per_concern() -> None:
    assert sorted(p.stem for p in DASHBOARDS.glob("*.json")) == sorted(CONCERNS)
    uids = [load(c)["uid"] for c in CONCERNS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("concern", CONCERNS)
def test_every_query_names_what_exists(concern: str) -> None:
    assert problems_of(load(concern)) == []


@pytest.mark.parametrize("concern", CONCERNS)
def test_dashboard_is_well_formed(concern: str) -> None:
    board = load(concern)
    assert board["schemaVersion"] >= 39
    assert board["title"].startswith("StreamPulse / ")
    assert board["description"]
    assert "streampulse" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(walk_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert title, panel
        assert panel["description"], title
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, title
        assert panel["fieldConfig"]["defaults"]["unit"], title
        source = panel["datasource"]
        assert source["uid"] in {"${datasource}", "${trino}"}, title
        assert source["uid"].strip("${}") in variables, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == source, title
            assert ("expr" in target) == (source["type"] == "prometheus"), title


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum(rate(a_total{job="b_total", le=~"c.*"}[5m]))', ["a_total"]),
        (
            "histogram_quantile(0.99, sum by (le, model) (rate(x_bucket[$__rate_interval])))",
            ["x_bucket"],
        ),
        ("sum(rate(x_sum[1h])) by (job) / sum(rate(x_count[1h])) by (job)", ["x_sum", "x_count"]),
        ("a * on (pod) group_left (node) b offset 5m", ["a", "b"]),
        ('max(c{namespace="$namespace"} > 0) * 1e3 - time() * 1000', ["c"]),
        ('sum without (instance) (d{name="sum(e)"}) or vector(0)', ["d"]),
        ("f_total @ end()", ["f_total"]),
    ],
)
def test_metric_names_are_parsed_out_of_promql(expr: str, names: list[str]) -> None:
    assert [use.name for use in metric_uses(expr)] == names


def test_variable_queries_name_their_series_only() -> None:
    assert template_expr('label_values(m{a="x,y"}, namespace)') == 'm{a="x,y"}'
    assert template_expr("label_values(namespace)") == ""
    assert template_expr("query_result(sum(m))") == "sum(m)"


def _board(expr: str) -> dict[str, Any]:
    target = {"refId": "A", "expr": expr}
    return {
        "panels": [{"type": "row", "title": "r", "panels": [{"title": "p", "targets": [target]}]}]
    }


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        (
            "sum(rate(streampulse_ingest_evnts_total[5m]))",
            "unknown metric streampulse_ingest_evnts_total",
        ),
        ("sum(streampulse_ingest_events_total)", "counter streampulse_ingest_events_total outside"),
        ("rate(streampulse_ingest_ack_latency_seconds[5m])", "is a histogram"),
        (
            "sum(rate(streampulse_ingest_ack_latency_seconds_bucket[5m]))",
            "outside histogram_quantile",
        ),
        (
            "histogram_quantil(0.9, rate(streampulse_ingest_ack_latency_seconds_bucket[5m]))",
            "unknown function",
        ),
        ("max(kafka_consumer_lag)", "unknown metric kafka_consumer_lag"),
    ],
)
def test_a_wrong_query_is_reported(expr: str, problem: str) -> None:
    found = problems_of(_board(expr))
    assert found
    assert all(f.startswith("panel 'p' target A: ") for f in found)
    assert any(problem in f for f in found), found


def test_a_wrong_table_or_column_is_reported() -> None:
    tables = {name: definition[0] for name, definition in flink_tables().items()}
    query = "SELECT * FROM lakehouse.streampulse.trending_tags WHERE $__timeFilter(window_start)"
    assert sql_problems(query, tables) == [
        "lakehouse.streampulse.trending_tags is not a table of lakehouse.streampulse",
        "$__timeFilter(window_start): no such column",
    ]
    query = "SELECT * FROM lakehouse.streampulse.anomalies WHERE $__timeFilter(posted_at)"
    assert sql_problems(query, tables) == ["$__timeFilter(posted_at): no such column"]


def test_the_code_exports_what_the_metric_modules_declare() -> None:
    exported = exported_metrics()
    assert exported["streampulse_dead_letters_total"] == COUNTER
    assert exported["streampulse_ingest_ack_latency_seconds"] == HISTOGRAM
    assert exported["streampulse_serving_queued_texts"] == GAUGE
    assert not set(exported) & set(EXTERNAL_METRICS)
