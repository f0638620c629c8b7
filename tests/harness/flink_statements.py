"""Flink SQL statements (DDL, INSERT) against the Paimon catalog, in the job's own venv.

Run by path with the Flink venv's python (``tests.harness.trino.write_paimon`` does), never
imported by the workers' test environment::

    python tests/harness/flink_statements.py --jars J --warehouse W [job options] -- SQL...

The options before ``--`` are the job's own (``streampulse_flink.options.JobOptions``), so the
catalog, its S3 access and the scratch directory are the job's. The database is created if
missing. Each statement runs to its end before the next starts, so every INSERT is one Paimon
commit (a snapshot) in the order given. Prints ``done <n>`` after each statement.
"""

from __future__ import annotations

import sys

from streampulse_flink.job import table_environment
from streampulse_flink.options import JobOptions
from streampulse_flink.tables import CATALOG


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    options, statements = args[:split], args[split + 1 :]
    at = options.index("--jars")
    jars = options[at + 1]
    del options[at : at + 2]
    opts = JobOptions.from_argv(options)
    env = table_environment(opts, jars, streaming=False)
    env.execute_sql(opts.catalog_sql(CATALOG))
    env.use_catalog(CATALOG)
    env.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{opts.database}`")
    env.use_database(opts.database)
    for number, statement in enumerate(statements, start=1):
        env.execute_sql(statement).wait()
        print(f"done {number}", flush=True)


if __name__ == "__main__":
    main()
