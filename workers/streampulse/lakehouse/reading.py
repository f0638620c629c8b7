"""The Paimon tables as Arrow tables (pypaimon), and SQL over them (DuckDB).

The Flink job writes the warehouse; this side only reads it, so it needs no JVM::

    lakehouse = Lakehouse.open(settings.paimon, default_warehouse)
    lakehouse.query("SELECT lang, SUM(posts) FROM toxicity_per_minute GROUP BY lang")

A query sees the tables under the names the job gives them. Each query reads the latest
committed snapshot of the tables it names, and only those: a query about one aggregate table
never loads ``enriched_posts``. Primary-key tables are read merged, one row per key.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pypaimon import CatalogFactory

from streampulse.errors import LakehouseError
from streampulse.settings import PaimonSettings

# pypaimon reports every scan plan at INFO; a refreshing dashboard would drown its log in them.
logging.getLogger("pypaimon").setLevel(logging.WARNING)


def catalog_options(settings: PaimonSettings, default_warehouse: Path) -> dict[str, str]:
    """pypaimon's filesystem-catalog options for a local or ``s3://`` warehouse."""
    warehouse = settings.warehouse or str(default_warehouse)
    options = {"warehouse": warehouse}
    if warehouse.startswith(("s3://", "s3a://")):
        options["warehouse"] = "s3://" + warehouse.split("://", 1)[1]
        options["fs.s3.region"] = settings.s3_region
        if settings.s3_endpoint:
            options["fs.s3.endpoint"] = settings.s3_endpoint
        if settings.s3_access_key:
            options["fs.s3.accessKeyId"] = settings.s3_access_key
            options["fs.s3.accessKeySecret"] = settings.s3_secret_key.get_secret_value()
    return options


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query, with the snapshot of each table it read."""

    table: pa.Table
    snapshots: dict[str, int | None]


class Lakehouse:
    """One Paimon database, read-only."""

    def __init__(
        self, catalog: Any, database: str, *, external_access: bool = False, secret: str = ""
    ) -> None:
        """``external_access``: let queries read and write files and load extensions (DuckDB's
        own setting; off, a query sees only the tables). ``secret`` is kept out of messages."""
        self._catalog = catalog
        self.database = database
        self.external_access = external_access
        self._secret = secret

    @classmethod
    def open(
        cls, settings: PaimonSettings, default_warehouse: Path, *, external_access: bool = False
    ) -> Lakehouse:
        options = catalog_options(settings, default_warehouse)
        secret = settings.s3_secret_key.get_secret_value()
        try:
            catalog = CatalogFactory.create(options)
        except Exception as exc:
            message = redacted(f"cannot open warehouse {options['warehouse']}: {exc}", secret)
            raise LakehouseError(message) from exc
        return cls(catalog, settings.database, external_access=external_access, secret=secret)

    def tables(self) -> list[str]:
        """The tables of the database, sorted; none yet when the job has not started."""
        try:
            return sorted(self._catalog.list_tables(self.database))
        except Exception as exc:
            if type(exc).__name__ == "DatabaseNotExistException":
                return []
            message = f"cannot list tables of {self.database}: {exc}"
            raise LakehouseError(redacted(message, self._secret)) from exc

    def read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The latest snapshot of one table (its ``columns`` only, when given)."""
        return self._read_with_snapshot(name, columns)[0]

    def snapshot_id(self, name: str) -> int | None:
        """The id of the table's latest committed snapshot; None before the first commit."""
        try:
            table = self._catalog.get_table(f"{self.database}.{name}")
            snapshot = table.snapshot_manager().get_latest_snapshot()
        except Exception as exc:
            message = f"cannot read {self.database}.{name}: {exc}"
            raise LakehouseError(redacted(message, self._secret)) from exc
        return None if snapshot is None else int(snapshot.id)

    def _read_with_snapshot(
        self, name: str, columns: list[str] | None = None
    ) -> tuple[pa.Table, int | None]:
        """One table's rows and the id of the snapshot the scan planned (None: no commit yet)."""
        try:
            table = self._catalog.get_table(f"{self.database}.{name}")
            snapshot = table.snapshot_manager().get_latest_snapshot()
            builder = table.new_read_builder()
            if columns:
                builder = builder.with_projection(columns)
            splits = builder.new_scan().plan().splits()
            arrow: pa.Table = builder.new_read().to_arrow(splits)
        except Exception as exc:
            message = f"cannot read {self.database}.{name}: {exc}"
            raise LakehouseError(redacted(message, self._secret)) from exc
        return arrow, None if snapshot is None else int(snapshot.id)

    def query(self, sql: str) -> QueryResult:
        """Run ``sql`` in DuckDB over the tables it names, each loaded from its latest snapshot."""
        names = referenced_tables(sql, self.tables())
        connection = duckdb.connect(
            config={"enable_external_access": self.external_access, "lock_configuration": True}
        )
        try:
            snapshots: dict[str, int | None] = {}
            for name in names:
                table, snapshots[name] = self._read_with_snapshot(name)
                connection.register(name, table)
            try:
                table = connection.sql(sql).arrow()
            except duckdb.Error as exc:
                raise LakehouseError(redacted(f"query failed: {exc}", self._secret)) from exc
        finally:
            connection.close()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        return QueryResult(table=table, snapshots=snapshots)


def redacted(text: str, secret: str) -> str:
    """``text`` without the secret (a library's error message may quote its options)."""
    return text.replace(secret, "***") if secret else text


def referenced_tables(sql: str, known: list[str]) -> list[str]:
    """The known table names that occur in ``sql`` as whole words (quoted or not)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    return [name for name in known if name.lower() in words]
