"""A real Trino over the Paimon tables: Paimon's Iceberg metadata, the project's Iceberg REST
catalog, Trino's Iceberg connector; on the local disk and on a real S3-compatible server.

Flink writes the tables with Paimon's Java commit (pypaimon does not publish Iceberg metadata):
an append table partitioned by day, and a primary-key table whose row ``a`` is updated by a
later snapshot. Trino must read exactly what ``streampulse sql`` (pypaimon + DuckDB) reads, see
a new commit in its next query, answer bad SQL with its own error and keep serving, and listen
on loopback only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streampulse.errors import TrinoQueryError
from streampulse.lakehouse.reading import Lakehouse
from streampulse.settings import PaimonSettings, Settings
from tests.harness.s3 import S3Server
from tests.harness.sockets import listeners
from tests.harness.trino import (
    ICEBERG_OPTIONS,
    PRIMARY_KEY_OPTIONS,
    TrinoStack,
    paimon_settings,
    write_paimon,
)

pytestmark = pytest.mark.integration

CREATE_AND_FILL = [
    "CREATE TABLE posts (id BIGINT, did STRING, score DOUBLE, posted_at TIMESTAMP(6), "
    "tags ARRAY<STRING>, dt STRING) PARTITIONED BY (dt) "
    f"WITH ('bucket' = '2', 'bucket-key' = 'did', {ICEBERG_OPTIONS})",
    "CREATE TABLE counts (k STRING, n BIGINT, updated_at TIMESTAMP(6), "
    f"PRIMARY KEY (k) NOT ENFORCED) WITH ('bucket' = '1', {PRIMARY_KEY_OPTIONS})",
    "INSERT INTO posts VALUES "
    "(1, 'did:plc:a', 0.5, TIMESTAMP '2025-01-15 12:00:01.123456', ARRAY['rust', 'go'], "
    "'2025-01-15'), "
    "(2, 'did:plc:b', 0.25, TIMESTAMP '2025-01-15 23:59:59.999999', ARRAY['go'], '2025-01-15'), "
    "(3, 'did:plc:a', CAST(NULL AS DOUBLE), TIMESTAMP '2025-01-16 00:00:00', "
    "ARRAY_REMOVE(ARRAY['x'], 'x'), '2025-01-16')",  # an empty array
    "INSERT INTO counts VALUES ('a', 1, TIMESTAMP '2025-01-15 12:00:00'), "
    "('b', 2, TIMESTAMP '2025-01-15 12:01:00')",
    # a later snapshot updates a's row
    "INSERT INTO counts VALUES ('a', 10, TIMESTAMP '2025-01-15 12:02:00.000001')",
]

POSTS = [
    {"id": 1, "did": "did:plc:a", "score": 0.5, "posted_at": "2025-01-15 12:00:01.123456",
     "tags": ["rust", "go"], "dt": "2025-01-15"},
    {"id": 2, "did": "did:plc:b", "score": 0.25, "posted_at": "2025-01-15 23:59:59.999999",
     "tags": ["go"], "dt": "2025-01-15"},
    {"id": 3, "did": "did:plc:a", "score": None, "posted_at": "2025-01-16 00:00:00.000000",
     "tags": [], "dt": "2025-01-16"},
]  # fmt: skip
COUNTS = [
    {"k": "a", "n": 10, "updated_at": "2025-01-15 12:02:00.000001"},
    {"k": "b", "n": 2, "updated_at": "2025-01-15 12:01:00.000000"},
]


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pypaimon's rows as Trino prints them: timestamps with six decimals."""
    return [
        {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
         for k, v in row.items()}
        for row in rows
    ]  # fmt: skip


@pytest.fixture(scope="module")
def local_paimon(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> PaimonSettings:
    paimon = paimon_settings(tmp_path_factory.mktemp("trino-warehouse"))
    write_paimon(settings.cache_dir, paimon, CREATE_AND_FILL)
    return paimon


@pytest.fixture(scope="module")
def trino(
    settings: Settings, local_paimon: PaimonSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrinoStack]:
    with TrinoStack(settings, local_paimon, tmp_path_factory.mktemp("trino")) as stack:
        yield stack


def test_trino_and_its_catalog_listen_on_loopback_only(trino: TrinoStack) -> None:
    assert trino.services is not None
    for service in (trino.services.server, trino.services.rest):
        assert service.pid is not None
        found = listeners(service.pid)
        assert found, f"{service.name} listens nowhere"
        assert all(listener.loopback for listener in found), found
    assert trino.services.server.uri.startswith("http://127.0.0.1:")
    assert trino.rows("SELECT count(*) AS nations FROM tpch.tiny.nation") == [{"nations": 25}]


@pytest.mark.parametrize(
    ("sql", "name", "message"),
    [
        ("SELEC 1", "SYNTAX_ERROR", "mismatched input 'SELEC'"),
        ("SELECT * FROM missing", "TABLE_NOT_FOUND", "'lakehouse.streampulse.missing' does not"),
        ("SELECT nope FROM counts", "COLUMN_NOT_FOUND", "Column 'nope' cannot be resolved"),
        ("SELECT n / 0 FROM counts", "DIVISION_BY_ZERO", "Division by zero"),
        # Paimon owns the tables: the catalog is read-only
        ("INSERT INTO counts VALUES ('c', 3, NULL)", "PERMISSION_DENIED", "Cannot insert"),
        ("DROP TABLE counts", "PERMISSION_DENIED", "Cannot drop table"),
    ],
)
def test_bad_sql_gets_trinos_error_and_trino_keeps_serving(
    trino: TrinoStack, sql: str, name: str, message: str
) -> None:
    assert trino.client is not None
    with pytest.raises(TrinoQueryError) as raised:
        trino.client.query(sql)
    assert raised.value.name == name
    assert message in str(raised.value)
    assert trino.rows("SELECT count(*) AS keys FROM counts") == [{"keys": 2}]


def test_append_and_primary_key_tables_read_exactly(
    trino: TrinoStack, local_paimon: PaimonSettings, tmp_path: Path
) -> None:
    assert trino.rows("SHOW TABLES") == [{"Table": "counts"}, {"Table": "posts"}]
    assert trino.rows("SELECT * FROM posts ORDER BY id") == POSTS
    assert trino.rows("SELECT * FROM counts ORDER BY k") == COUNTS
    assert trino.client is not None
    types = trino.client.query("SELECT * FROM posts").types
    assert types == ("bigint", "varchar", "double", "timestamp(6)", "array(varchar)", "varchar")
    # ``streampulse sql`` reads the same rows from Paimon's own metadata
    lakehouse = Lakehouse.open(local_paimon, tmp_path / "unused")
    assert _plain(lakehouse.query("SELECT * FROM posts ORDER BY id").table.to_pylist()) == POSTS
    assert _plain(lakehouse.query("SELECT * FROM counts ORDER BY k").table.to_pylist()) == COUNTS
    # partition pruning and aggregates over the Iceberg view of the tables
    assert trino.rows(
        "SELECT dt, count(*) AS posts, sum(cardinality(tags)) AS tags FROM posts "
        "WHERE dt >= '2025-01-15' GROUP BY dt ORDER BY dt"
    ) == [{"dt": "2025-01-15", "posts": 2, "tags": 3}, {"dt": "2025-01-16", "posts": 1, "tags": 0}]


def test_a_new_commit_is_visible_to_the_next_query(
    trino: TrinoStack, local_paimon: PaimonSettings, settings: Settings
) -> None:
    before = trino.rows('SELECT count(*) AS snapshots FROM "counts$snapshots"')[0]["snapshots"]
    write_paimon(
        settings.cache_dir,
        local_paimon,
        ["INSERT INTO counts VALUES ('b', 20, TIMESTAMP '2025-01-15 12:03:00'), "
         "('c', 3, TIMESTAMP '2025-01-15 12:03:00')"],
    )  # fmt: skip
    assert trino.rows("SELECT k, n FROM counts ORDER BY k") == [
        {"k": "a", "n": 10}, {"k": "b", "n": 20}, {"k": "c", "n": 3},
    ]  # fmt: skip
    after = trino.rows('SELECT count(*) AS snapshots FROM "counts$snapshots"')[0]["snapshots"]
    assert after > before


def test_tables_on_s3_read_exactly_and_the_secret_stays_out(
    settings: Settings, tmp_path: Path
) -> None:
    with S3Server(tmp_path / "s3") as s3:
        paimon = paimon_settings("warehouse", s3)
        write_paimon(settings.cache_dir, paimon, CREATE_AND_FILL)
        with TrinoStack(settings, paimon, tmp_path / "trino") as trino:
            assert trino.rows("SELECT * FROM posts ORDER BY id") == POSTS
            assert trino.rows("SELECT * FROM counts ORDER BY k") == COUNTS
            assert trino.rows("SELECT did, count(*) AS posts FROM posts GROUP BY did "
                              "ORDER BY did") == [
                {"did": "did:plc:a", "posts": 2}, {"did": "did:plc:b", "posts": 1},
            ]  # fmt: skip
    # neither the configuration written for Trino and the REST catalog nor their logs hold it
    written = [p for p in (tmp_path / "trino").rglob("*") if p.is_file()]
    assert any(p.name == "lakehouse.properties" for p in written)
    for path in written:
        assert s3.secret_key not in path.read_text(errors="replace"), path
