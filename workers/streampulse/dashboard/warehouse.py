"""The Paimon warehouse as the dashboard reads it: tables, queries, and when each was committed.

Queries and reads go through :class:`~streampulse.lakehouse.reading.Lakehouse`; the commit time
of each table's latest snapshot (what says how fresh the data is, and stands in for the Flink
checkpoint age when no Flink REST API is configured) is read from the same catalog's metadata.
The catalog is opened lazily and again after a failure, so the dashboard can start before the
job has created the warehouse. Calls are serialized: the page's refresh and the pipeline's poll
run in worker threads, and one reader at a time keeps the load on the warehouse predictable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pypaimon import CatalogFactory

from streampulse.errors import LakehouseError
from streampulse.lakehouse.reading import Lakehouse, catalog_options
from streampulse.settings import PaimonSettings


@dataclass(frozen=True)
class Snapshot:
    """A table's latest committed snapshot."""

    id: int
    committed_ms: int


class Warehouse:
    """One Paimon database, read-only, opened on first use."""

    def __init__(self, settings: PaimonSettings, default_warehouse: Path) -> None:
        self._settings = settings
        self._default = default_warehouse
        self.location = catalog_options(settings, default_warehouse)["warehouse"]
        self._lock = threading.RLock()
        self._lakehouse: Lakehouse | None = None
        self._catalog: Any = None

    def _open(self) -> Lakehouse:
        with self._lock:
            if self._lakehouse is None:
                options = catalog_options(self._settings, self._default)
                try:
                    self._catalog = CatalogFactory.create(options)
                except Exception as exc:
                    raise LakehouseError(f"cannot open warehouse {self.location}: {exc}") from exc
                self._lakehouse = Lakehouse(self._catalog, self._settings.database)
            return self._lakehouse

    def _forget(self) -> None:
        with self._lock:
            self._lakehouse = None
            self._catalog = None

    def tables(self) -> list[str]:
        """The database's tables, sorted; none before the job has created them."""
        with self._lock:
            try:
                return self._open().tables()
            except LakehouseError:
                self._forget()
                raise

    def query(self, sql: str) -> pa.Table:
        """DuckDB ``sql`` over the latest snapshots of the tables it names."""
        with self._lock:
            return self._open().query(sql).table

    def read(self, name: str, columns: list[str]) -> pa.Table:
        """The latest snapshot of one table, only ``columns`` read."""
        with self._lock:
            return self._open().read(name, columns)

    def snapshot(self, name: str) -> Snapshot | None:
        """The table's latest committed snapshot; None before its first commit."""
        with self._lock:
            self._open()
            try:
                table = self._catalog.get_table(f"{self._settings.database}.{name}")
                latest = table.snapshot_manager().get_latest_snapshot()
            except Exception as exc:
                raise LakehouseError(
                    f"cannot read {self._settings.database}.{name}: {exc}"
                ) from exc
        return None if latest is None else Snapshot(int(latest.id), int(latest.time_millis))
