"""Batch SQL over the Paimon tables: ``python -m streampulse_flink.query --warehouse W "SQL"...``.

Prints one JSON object per query: ``{"query": ..., "rows": [{column: value}, ...]}``. Tables are
named as in the job (``enriched_posts``, ...): the catalog and database are the current ones.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import os
from typing import Any

from streampulse_flink.job import table_environment
from streampulse_flink.options import JobOptions
from streampulse_flink.tables import CATALOG


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    return value


def main() -> None:
    parser = argparse.ArgumentParser(prog="streampulse_flink.query")
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--database", default="streampulse")
    parser.add_argument("--jars", default=os.environ.get("STREAMPULSE_FLINK_JARS", ""))
    parser.add_argument("--scratch-dir", default="", help="for temporary files; see JobOptions")
    parser.add_argument("queries", nargs="+")
    args = parser.parse_args()
    opts = JobOptions(
        warehouse=args.warehouse,
        database=args.database,
        s3_endpoint=os.environ.get("STREAMPULSE_PAIMON__S3_ENDPOINT", ""),
        s3_access_key=os.environ.get("STREAMPULSE_PAIMON__S3_ACCESS_KEY", ""),
        scratch_dir=args.scratch_dir,
    )
    env = table_environment(opts, args.jars, streaming=False)
    env.execute_sql(opts.catalog_sql(CATALOG))
    env.use_catalog(CATALOG)
    env.use_database(args.database)
    for query in args.queries:
        result = env.execute_sql(query)
        names = result.get_table_schema().get_field_names()
        with result.collect() as rows:
            data = [dict(zip(names, _plain(list(row)), strict=True)) for row in rows]
        print(json.dumps({"query": query, "rows": data}), flush=True)


if __name__ == "__main__":
    main()
