"""The dashboard and `streampulse sql` against hostile input, for real (item 10): payloads in a
post's text, an entity, a hashtag and a DID create no element and no attribute in the DOM
headless Chromium builds; the security headers are on every answer, errors included; paths that
climb out of /static answer 404; a query reads only the tables unless the shell is trusted."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.faults.matrix import SecurityCheck
from tests.harness.browser import require_chromium
from tests.harness.dashboard_data import (
    Hostile,
    fill_warehouse,
    start_dashboard,
    stop_cleanly,
    wait_dom,
)
from tests.harness.warehouse import Warehouse

pytestmark = pytest.mark.faults

HOSTILE = Hostile(
    entity='<img src=x onerror="window.pwned=1">',
    hashtag='"><svg onload=window.pwned=2>',
    text='<iframe srcdoc="<script>parent.pwned=3</script>"></iframe> \u202ertl',
    bot_did='did:plc:"><img src=y onerror=window.pwned=4>',
)
# shown as text (a DID is shortened on screen and kept whole in its row's data-did)
SHOWN = (HOSTILE.entity, HOSTILE.hashtag, HOSTILE.text)
STATIC = Path(__file__).resolve().parents[2] / "workers" / "streampulse" / "dashboard" / "static"


def page_tags() -> frozenset[str]:
    """Every element the dashboard itself makes: its HTML's and those its scripts create with
    ``el("tag", ...)`` or ``svg("tag", ...)``. Anything else in the DOM came from data."""
    found = set(re.findall(r"<([a-z][a-z0-9]*)", (STATIC / "index.html").read_text()))
    for script in STATIC.glob("*.js"):
        found |= set(re.findall(r"\b(?:el|svg)\(\"([a-z][a-z0-9]*)\"", script.read_text()))
    return frozenset(found)


class _Markup(HTMLParser):
    """Every element and attribute of a serialized DOM, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _markup(dom: str) -> _Markup:
    parser = _Markup()
    parser.feed(dom)
    return parser


def test_hostile_payloads_stay_text_in_the_browser(tmp_path: Path) -> None:
    require_chromium()
    warehouse = Warehouse(tmp_path / "warehouse")
    fill_warehouse(warehouse, HOSTILE)
    process, url = start_dashboard(tmp_path, {"STREAMPULSE_PAIMON__WAREHOUSE": str(warehouse.path)})
    try:
        dom = wait_dom(
            url,
            tmp_path / "chromium",
            lambda d: (
                all(p in "".join(_markup(d).text) for p in SHOWN)
                and any(a.get("data-did") == HOSTILE.bot_did for _, a in _markup(d).elements)
            ),
            120,
        )
    finally:
        stop_cleanly(process)
    markup = _markup(dom)
    handlers = [(t, k) for t, attrs in markup.elements for k in attrs if k.startswith("on")]
    foreign = sorted({t for t, _ in markup.elements} - page_tags())
    scripts = [attrs for t, attrs in markup.elements if t in {"script", "iframe", "img"}]
    passed = not handlers and not foreign and all(a.get("src", "").startswith("/") for a in scripts)
    SecurityCheck(
        item=10,
        check="payloads in a post, an entity, a hashtag and a DID stay text in Chromium's DOM",
        passed=passed,
        detail=f"handlers {handlers}, foreign elements {foreign}",
    ).write()
    assert handlers == []
    assert foreign == []
    assert [a["src"] for a in scripts] == ["/static/dashboard.js"]


def _raw_get(url: str, path: str) -> tuple[int, dict[str, str]]:
    """A GET with the path sent exactly as given (no client-side normalization)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


ROUTES = {
    "/": 200,
    "/static/dashboard.js": 200,
    "/api/content": 200,
    "/api/pipeline": 200,
    "/healthz": 200,
    "/nothing-here": 404,
    "/static/../index.html": 404,
    "/static/..%2findex.html": 404,
    "/static/%2e%2e/%2e%2e/etc/passwd": 404,
    "/static/dashboard.js/../../etc/passwd": 404,
}


def test_security_headers_on_every_answer_and_no_path_out_of_static(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "warehouse")
    fill_warehouse(warehouse)
    process, url = start_dashboard(tmp_path, {"STREAMPULSE_PAIMON__WAREHOUSE": str(warehouse.path)})
    try:
        answers = {path: _raw_get(url, path) for path in ROUTES}
    finally:
        stop_cleanly(process)
    missing = {
        path: sorted({"content-security-policy", "x-content-type-options"} - set(headers))
        for path, (_, headers) in answers.items()
        if {"content-security-policy", "x-content-type-options"} - set(headers)
    }
    statuses = {path: status for path, (status, _) in answers.items()}
    SecurityCheck(
        item=10,
        check=f"CSP and nosniff on every answer, errors included ({len(ROUTES)} routes)",
        passed=not missing,
        detail=str(missing),
    ).write()
    SecurityCheck(
        item=10,
        check="paths that climb out of /static answer 404",
        passed=statuses == ROUTES,
        detail=str(statuses),
    ).write()
    assert missing == {}
    assert statuses == ROUTES
    for _, headers in answers.values():
        assert headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in headers["content-security-policy"]


def _sql(warehouse: Path, query: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streampulse.cli", "sql", query, "--warehouse", str(warehouse)]
        + list(flags),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sql_reads_only_the_tables_unless_the_shell_is_trusted(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "warehouse")
    fill_warehouse(warehouse)
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\nnot for queries\n")
    query = f"SELECT * FROM read_csv('{outside}')"
    refused = _sql(warehouse.path, query)
    tables = _sql(warehouse.path, "SELECT count(*) AS n FROM volume_per_minute", "--format", "csv")
    written = _sql(warehouse.path, f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'")
    trusted = _sql(warehouse.path, query, "--allow-external-access", "--format", "csv")
    passed = (
        refused.returncode != 0
        and "disabled by configuration" in refused.stderr
        and written.returncode != 0
        and not (tmp_path / "out.csv").exists()
        and tables.returncode == 0
        and trusted.returncode == 0
        and "not for queries" in trusted.stdout
    )
    SecurityCheck(
        item=10,
        check="`streampulse sql` reads only the tables; files only with --allow-external-access",
        passed=passed,
        detail=f"refused: {refused.stderr.strip()[-200:]}",
    ).write()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "disabled by configuration" in refused.stderr
    assert written.returncode == 1
    assert not (tmp_path / "out.csv").exists()
    assert tables.returncode == 0, tables.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert "not for queries" in trusted.stdout
