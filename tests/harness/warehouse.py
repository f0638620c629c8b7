"""A real Paimon warehouse written with pypaimon, table for table as the Flink job declares it.

The schemas, primary keys, partition keys and options come from ``flink/streampulse_flink/
tables.py`` (the job's own definitions, loaded by path), so a warehouse built here is what the
dashboard and ``streampulse sql`` read from a running job, without a JVM.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
from pypaimon import CatalogFactory, Schema

from tests.harness.flink import load_flink_module

tables = load_flink_module("streampulse_flink/tables.py", "streampulse_flink_tables")

_ATOMIC = {
    "STRING": pa.string(),
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP(6)": pa.timestamp("us"),
}


def _split_top_level(text: str) -> list[str]:
    """``a, b<c, d>, e`` -> ``[a, b<c, d>, e]``: commas outside angle brackets only."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _field(definition: str) -> pa.Field:
    name, sql_type = definition.split(None, 1)
    return pa.field(name.strip("`"), arrow_type(sql_type))


def arrow_type(sql_type: str) -> pa.DataType:
    """The Arrow type of a Flink SQL type as written in tables.py."""
    sql_type = " ".join(sql_type.split())
    if sql_type in _ATOMIC:
        return _ATOMIC[sql_type]
    match = re.fullmatch(r"(ARRAY|MAP|ROW)<(.*)>", sql_type)
    if match is None:
        raise ValueError(f"unsupported type {sql_type!r}")
    kind, inner = match.groups()
    if kind == "ARRAY":
        return pa.list_(arrow_type(inner))
    if kind == "MAP":
        key, value = _split_top_level(inner)
        return pa.map_(arrow_type(key), arrow_type(value))
    return pa.struct([_field(part) for part in _split_top_level(inner)])


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of a job table; primary-key columns are NOT NULL, as Paimon makes them."""
    columns, key, _, _ = tables.TABLES[name]
    keys = {k.strip() for k in key.split(",") if k.strip()}
    fields = [_field(part) for part in _split_top_level(columns)]
    return pa.schema([f.with_nullable(f.name not in keys) for f in fields])


class Warehouse:
    """A filesystem Paimon catalog with the job's database and tables."""

    def __init__(self, path: Path, database: str = "streampulse") -> None:
        self.path = path
        self.database = database
        self.catalog = CatalogFactory.create({"warehouse": str(path)})

    def create(self, *names: str) -> None:
        """Create the database and the named job tables (all of them when none are named)."""
        self.catalog.create_database(self.database, True)
        for name in names or tuple(tables.TABLES):
            _, key, partition, options = tables.TABLES[name]
            schema = Schema.from_pyarrow_schema(
                arrow_schema(name),
                partition_keys=[p.strip() for p in partition.split(",") if p.strip()],
                primary_keys=[k.strip() for k in key.split(",") if k.strip()],
                options=dict(options),
            )
            self.catalog.create_table(f"{self.database}.{name}", schema, True)

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        """One batch write and commit of ``rows`` (a new snapshot, like one job checkpoint)."""
        table = self.catalog.get_table(f"{self.database}.{name}")
        data = pa.Table.from_pylist(rows, schema=arrow_schema(name))
        builder = table.new_batch_write_builder()
        write = builder.new_write()
        commit = builder.new_commit()
        try:
            write.write_arrow(data)
            commit.commit(write.prepare_commit())
        finally:
            write.close()
            commit.close()
