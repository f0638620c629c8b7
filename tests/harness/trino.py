"""Trino over a test warehouse, and Paimon tables written for it by Flink.

``TrinoStack`` starts what ``streampulse local trino`` starts (the Iceberg REST catalog and a
Trino coordinator, through ``trino_over_warehouse``) for one warehouse, local or on S3, and
gives a query client with the lakehouse catalog and the database as defaults.

``write_paimon`` runs Flink SQL statements (CREATE TABLE, INSERT) in the job's own venv with
the job's catalog: pypaimon does not write Iceberg metadata, Paimon's Java commit does.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from streampulse.local.iceberg_rest import warehouse_uri
from streampulse.local.trino import LocalTrino, trino_over_warehouse
from streampulse.local.trino_client import TrinoClient
from streampulse.settings import PaimonSettings, Settings, TrinoSettings
from tests.harness.flink import flink_environment
from tests.harness.s3 import S3Server

STATEMENTS_SCRIPT = Path(__file__).with_name("flink_statements.py")

# Paimon table options that publish Iceberg metadata where the REST catalog serves it; a
# primary-key table needs full compaction at every commit to be listed there.
ICEBERG_OPTIONS = "'metadata.iceberg.storage' = 'hadoop-catalog', 'file.format' = 'parquet'"
PRIMARY_KEY_OPTIONS = f"{ICEBERG_OPTIONS}, 'full-compaction.delta-commits' = '1'"


def paimon_settings(warehouse: Path | str, s3: S3Server | None = None) -> PaimonSettings:
    """The ``paimon`` settings of a local warehouse (as a ``file:`` URI: Paimon writes the
    Iceberg metadata's paths as it is given the warehouse, and Trino needs a scheme) or of a
    bucket on ``s3``."""
    if s3 is None:
        return PaimonSettings(warehouse=warehouse_uri(str(warehouse)))
    return PaimonSettings(
        warehouse=f"s3://{s3.bucket}/{warehouse}",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=SecretStr(s3.secret_key),
    )


def write_paimon(
    cache_dir: Path, paimon: PaimonSettings, statements: list[str], timeout_s: float = 300.0
) -> None:
    """Run ``statements`` in order with Flink (batch), each INSERT one Paimon commit."""
    env = flink_environment(cache_dir)
    with tempfile.TemporaryDirectory(prefix="streampulse-flink-sql-") as scratch:
        argv = [str(env.python), str(STATEMENTS_SCRIPT), "--jars", env.pipeline_jars(),
                "--warehouse", paimon.warehouse, "--database", paimon.database,
                "--s3-endpoint", paimon.s3_endpoint, "--s3-access-key", paimon.s3_access_key,
                "--scratch-dir", scratch, "--", *statements]  # fmt: skip
        secret = {"STREAMPULSE_PAIMON__S3_SECRET_KEY": paimon.s3_secret_key.get_secret_value()}
        result = subprocess.run(
            argv,
            env={**os.environ, **env.process_env(), **secret},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if result.returncode != 0 or f"done {len(statements)}" not in result.stdout:
        # the causes first: the tail of a Flink failure is mostly stack frames
        causes = dict.fromkeys(
            line for line in result.stderr.splitlines() if line.startswith("Caused by:")
        )
        raise AssertionError(
            f"Flink statements failed ({result.returncode}):\n"
            + "\n".join(causes)
            + f"\n...\n{result.stderr[-3000:]}"
        )


class TrinoStack:
    """The REST catalog and Trino over one warehouse, on free loopback ports."""

    def __init__(self, settings: Settings, paimon: PaimonSettings, data_dir: Path) -> None:
        self.settings = settings.model_copy(
            update={"paimon": paimon, "trino": TrinoSettings(port=0, rest_port=0)}
        )
        self.data_dir = data_dir
        self._context: Any = None
        self.services: LocalTrino | None = None
        self.client: TrinoClient | None = None

    def __enter__(self) -> TrinoStack:
        self._context = trino_over_warehouse(self.settings, self.data_dir)
        self.services = self._context.__enter__()
        catalog, schema = self.settings.trino.catalog, self.settings.paimon.database
        self.client = self.services.server.client(catalog, schema)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is not None:
            self.client.close()
        if self._context is not None:
            self._context.__exit__(kind, exc, tb)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts (fails the test with Trino's message on an error)."""
        assert self.client is not None, "not started"
        return self.client.query(sql).dicts()
