"""The Grafana content dashboard's SQL panels, made runnable outside Grafana.

The panels query Trino with Grafana's ``$__timeFilter(column)`` macro. ``panel_queries`` reads
them from the chart's dashboard and expands the macro to a plain range on the column
(``column BETWEEN TIMESTAMP '...' AND TIMESTAMP '...'``), which Trino and DuckDB both read;
``for_duckdb`` drops the ``lakehouse.streampulse.`` qualification, since ``streampulse sql``
names the tables alone.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

DASHBOARD = (
    Path(__file__).resolve().parents[2]
    / "charts/streampulse-operator/dashboards/content-intelligence.json"
)
QUALIFIED = "lakehouse.streampulse."
_TIME_FILTER = re.compile(r"\$__timeFilter\((\w+)\)")


def panel_queries(start: datetime, end: datetime) -> dict[str, str]:
    """Panel title -> its SQL for the time range ``[start, end]`` (UTC wall-clock times)."""
    board = json.loads(DASHBOARD.read_text())
    lo, hi = (t.strftime("%Y-%m-%d %H:%M:%S.%f") for t in (start, end))
    found: dict[str, str] = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "rawSQL" in target:
                found[panel["title"]] = _TIME_FILTER.sub(
                    rf"\1 BETWEEN TIMESTAMP '{lo}' AND TIMESTAMP '{hi}'", target["rawSQL"]
                )
    return found


def for_duckdb(sql: str) -> str:
    return sql.replace(QUALIFIED, "")
