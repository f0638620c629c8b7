"""``streampulse sql``: result formatting, statement splitting, the shell loop, table names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from streampulse.errors import LakehouseError
from streampulse.lakehouse.reading import QueryResult, catalog_options, referenced_tables
from streampulse.lakehouse.shell import format_result, format_table, interactive, statements
from streampulse.settings import PaimonSettings

pytestmark = pytest.mark.unit

TABLE = pa.table({"lang": ["en", "ja", None], "posts": [4, 1, 2]})


def test_format_table_aligns_columns_and_counts_rows() -> None:
    assert format_table(TABLE).splitlines() == [
        "lang | posts",
        "-----+------",
        "en   | 4    ",
        "ja   | 1    ",
        "NULL | 2    ",
        "(3 rows)",
    ]


def test_format_table_cuts_long_cells_and_rows() -> None:
    table = pa.table({"text": ["x" * 100, "short\nline"]})
    lines = format_table(table, max_rows=1).splitlines()
    assert len(lines[2]) == 60
    assert lines[2].endswith("…")
    assert lines[-1] == "(2 rows, first 1 shown)"


def test_json_and_csv_output() -> None:
    assert [json.loads(line) for line in format_result(TABLE, "json").splitlines()] == [
        {"lang": "en", "posts": 4}, {"lang": "ja", "posts": 1}, {"lang": None, "posts": 2},
    ]  # fmt: skip
    assert format_result(TABLE, "csv").splitlines() == ["lang,posts", "en,4", "ja,1", ",2"]


def test_statements_end_at_semicolons_and_dot_commands_stand_alone() -> None:
    lines = [".tables", "SELECT 1", "FROM t;", "SELECT 2;", "SELECT 3"]
    assert list(statements(lines)) == [".tables", "SELECT 1\nFROM t", "SELECT 2", "SELECT 3"]


def test_referenced_tables_are_whole_words() -> None:
    known = ["anomalies", "enriched_posts", "trending_entities"]
    sql = 'SELECT * FROM "Trending_Entities" t JOIN enriched_posts_x USING (did)'
    assert referenced_tables(sql, known) == ["trending_entities"]


class _FakeLakehouse:
    database = "streampulse"

    def tables(self) -> list[str]:
        return ["anomalies", "volume_per_minute"]

    def query(self, sql: str) -> QueryResult:
        if "nope" in sql:
            raise LakehouseError("query failed: no such column nope")
        return QueryResult(table=TABLE, snapshots={})


def test_the_shell_survives_errors_and_quits() -> None:
    answers: Iterator[str] = iter(["SELECT nope FROM anomalies;", ".tables", "SELECT", "1;",
                                   ".quit", "SELECT never;"])  # fmt: skip
    written: list[str] = []
    interactive(_FakeLakehouse(), "table", lambda _prompt: next(answers), written.append)  # type: ignore[arg-type]
    assert written[1] == "error: query failed: no such column nope"
    assert written[2] == "anomalies\nvolume_per_minute"
    assert written[3].endswith("(3 rows)")
    assert len(written) == 4  # nothing after .quit


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (PaimonSettings(), {"warehouse": "/state/warehouse"}),
        (
            PaimonSettings(
                warehouse="s3a://lake/wh",
                s3_endpoint="http://127.0.0.1:7070",
                s3_access_key="key",
                s3_secret_key=SecretStr("secret"),
            ),
            {
                "warehouse": "s3://lake/wh",
                "fs.s3.region": "us-east-1",
                "fs.s3.endpoint": "http://127.0.0.1:7070",
                "fs.s3.accessKeyId": "key",
                "fs.s3.accessKeySecret": "secret",
            },
        ),
    ],
)
def test_catalog_options(settings: PaimonSettings, expected: dict[str, Any]) -> None:
    assert catalog_options(settings, Path("/state/warehouse")) == expected
