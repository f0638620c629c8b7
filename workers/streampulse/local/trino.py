"""A real Trino coordinator over the Paimon tables, as a local process.

Trino's server is published on Maven Central as one archive (``io.trino:trino-server``,
``tar.gz``, some 800 MB). It is fetched once into ``<cache>/trino-<version>``, unpacked, and cut
down to the two plugins used here: ``iceberg`` (the tables) and ``tpch`` (the readiness probe's
built-in data). The coordinator runs with its configuration written into its data directory,
bound to one address, on Java 24 or newer.

The tables are read through Trino's Iceberg connector from the Iceberg REST catalog in
``iceberg_rest.py``, which serves the Iceberg metadata Paimon publishes beside the warehouse.
``trino_over_warehouse`` starts both for the configured warehouse, local or on S3.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from streampulse.local.fetching import copy_artifact, locked
from streampulse.local.iceberg_rest import (
    IcebergRestCatalog,
    IcebergRestHome,
    S3Access,
    ensure_iceberg_rest,
    iceberg_location,
)
from streampulse.local.jdks import find_java_home
from streampulse.local.services import JavaServer
from streampulse.local.trino_client import TrinoClient
from streampulse.settings import Settings

log = logging.getLogger(__name__)

TRINO_JAVA = 24  # the oldest Java Trino 476 starts on
JAVA_HOME_SETTING = "STREAMPULSE_TRINO__JAVA_HOME"
KEPT_PLUGINS = ("iceberg", "tpch")
# The catalog's S3 secret reaches Trino through its environment (${ENV:...} in the catalog
# file), never through a file on disk or the command line.
S3_SECRET_ENV = "STREAMPULSE_TRINO_S3_SECRET_KEY"  # noqa: S105 - a variable's name
_READY_SQL = "SELECT count(*) FROM tpch.tiny.nation"


def ensure_trino(cache_dir: Path, version: str, progress: Callable[[str], None] = log.info) -> Path:
    """The unpacked Trino server directory, fetched from Maven Central the first time.

    About 800 MB to download and unpack (a few seconds on a fast link, minutes on a slow one:
    ``progress`` hears how far it got every 10 s), 500 MB once pruned to the kept plugins.
    """
    home = cache_dir / f"trino-{version}"
    server = home / f"trino-server-{version}"
    stamp = home / ".complete"
    if stamp.exists():
        return server
    with locked(home.parent / f"{home.name}.lock"):
        if stamp.exists():
            return server
        shutil.rmtree(home, ignore_errors=True)
        download = home / "download"
        started = time.monotonic()
        progress(f"fetching Trino {version} (about 800 MB) from Maven Central into {home}")
        archive = copy_artifact(
            f"io.trino:trino-server:{version}:tar.gz",
            download,
            download / "repository",
            f"Trino {version}",
            progress=progress,
        )
        progress(f"unpacking {archive.name}")
        with tarfile.open(archive, "r:gz") as tar:
            # The archive shares jars between plugins through hard links, so it is unpacked
            # whole, then pruned.
            tar.extractall(home, filter="data")
        shutil.rmtree(download)
        for plugin in (server / "plugin").iterdir():
            if plugin.name not in KEPT_PLUGINS:
                shutil.rmtree(plugin)
        stamp.write_text(f"{time.monotonic() - started:.1f}s\n")
        progress(f"Trino {version} ready in {server} ({time.monotonic() - started:.0f}s)")
    return server


def lakehouse_catalog(rest_uri: str, s3: S3Access | None) -> dict[str, str]:
    """The Iceberg connector's properties: the REST catalog, read-only, and the file system
    the table files are on (the local disk, or S3 with its endpoint and keys)."""
    properties = {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": rest_uri,
        # Paimon owns the tables: Trino may read them, never write.
        "iceberg.security": "read_only",
    }
    if s3 is None:
        properties |= {"fs.native-local.enabled": "true", "local.location": "/"}
    else:
        properties |= {
            "fs.native-s3.enabled": "true",
            "s3.region": s3.region,
            "s3.path-style-access": "true",
            "s3.aws-access-key": s3.access_key,
            "s3.aws-secret-key": f"${{ENV:{S3_SECRET_ENV}}}",
        }
        if s3.endpoint:
            properties["s3.endpoint"] = s3.endpoint
    return properties


def _properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


class TrinoServer(JavaServer):
    """One coordinator (it also runs the work) with the given catalogs; a context manager.

    ``start()`` returns once a query over the built-in ``tpch`` catalog answers, which needs the
    coordinator, its scheduler and a worker slot: ``/v1/info`` answers earlier.
    """

    name = "trino"

    def __init__(
        self,
        server_dir: Path,
        java_home: Path,
        data_dir: Path,
        catalogs: dict[str, dict[str, str]],
        *,
        secret_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        heap_mb: int = 1024,
        start_timeout_s: float = 180.0,
    ) -> None:
        super().__init__(java_home, data_dir, host=host, port=port, heap_mb=heap_mb,
                         start_timeout_s=start_timeout_s, stop_timeout_s=30.0)  # fmt: skip
        self.server_dir = server_dir
        self.catalogs = {"tpch": {"connector.name": "tpch"}, **catalogs}
        self.secret_env = secret_env or {}

    def client(self, catalog: str | None = None, schema: str | None = None) -> TrinoClient:
        """A query client of this server, with a default catalog and schema."""
        return TrinoClient(self.uri, catalog=catalog, schema=schema)

    def _write_config(self) -> Path:
        etc = self.data_dir / "etc"
        shutil.rmtree(etc, ignore_errors=True)
        (etc / "catalog").mkdir(parents=True)
        node_dir = self.data_dir / "node"
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        (etc / "node.properties").write_text(_properties({
            "node.environment": "streampulse",
            "node.id": "streampulse-local",
            "node.data-dir": str(node_dir),
            "node.bind-ip": self.host,
            "node.internal-address": "127.0.0.1",
        }))  # fmt: skip
        (etc / "config.properties").write_text(_properties({
            "coordinator": "true",
            "node-scheduler.include-coordinator": "true",
            "http-server.http.port": str(self.port),
            "discovery.uri": self.uri,
        }))  # fmt: skip
        (etc / "jvm.config").write_text("\n".join([
            "-server", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
            "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
            "-Djdk.attach.allowAttachSelf=true", "-XX:+EnableDynamicAgentLoading",
            "-Dfile.encoding=UTF-8", f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
        ]) + "\n")  # fmt: skip
        (etc / "log.properties").write_text("io.trino=INFO\n")
        for name, properties in self.catalogs.items():
            (etc / "catalog" / f"{name}.properties").write_text(_properties(properties))
        return etc

    def _command(self) -> tuple[list[str], dict[str, str]]:
        etc = self._write_config()
        launcher = str(self.server_dir / "bin" / "launcher")
        argv = [launcher, "run", "-etc-dir", str(etc), "-data-dir", str(self.data_dir / "node"),
                "-jvm-dir", str(self.java_home)]  # fmt: skip
        return argv, {"JAVA_HOME": str(self.java_home), **self.secret_env}

    def _ready(self) -> bool:
        with TrinoClient(self.uri, timeout_s=10.0) as client:
            return client.query(_READY_SQL).rows == [[25]]


def warehouse_access(settings: Settings) -> tuple[str, S3Access | None]:
    """The configured Paimon warehouse, and its S3 access if it is on S3."""
    warehouse = settings.paimon.warehouse or str(settings.local.state_dir / "warehouse")
    if not warehouse.startswith(("s3://", "s3a://")):
        return warehouse, None
    paimon = settings.paimon
    return warehouse, S3Access(
        endpoint=paimon.s3_endpoint,
        region=paimon.s3_region,
        access_key=paimon.s3_access_key,
        secret_key=paimon.s3_secret_key.get_secret_value(),
    )


def ensure_local_trino(settings: Settings) -> tuple[Path, Path, IcebergRestHome]:
    """The Java home, Trino's server directory and the REST catalog, fetched if missing."""
    java_home = find_java_home(settings.trino.java_home, TRINO_JAVA, JAVA_HOME_SETTING)
    server_dir = ensure_trino(settings.cache_dir, settings.trino.version)
    return java_home, server_dir, ensure_iceberg_rest(settings.cache_dir, java_home)


@dataclass(frozen=True)
class LocalTrino:
    """The running pair: the REST catalog and the Trino coordinator that reads through it."""

    rest: IcebergRestCatalog
    server: TrinoServer


@contextmanager
def trino_over_warehouse(settings: Settings, data_dir: Path | None = None) -> Iterator[LocalTrino]:
    """The REST catalog and Trino over the configured warehouse, both stopped on exit.

    Fetches what is missing first. Data and logs go to ``data_dir`` (default
    ``<local.state_dir>/trino``).
    """
    config = settings.trino
    java_home, server_dir, rest_home = ensure_local_trino(settings)
    warehouse, s3 = warehouse_access(settings)
    root = data_dir or settings.local.state_dir / "trino"
    with ExitStack() as stack:
        rest = IcebergRestCatalog(
            rest_home, java_home, warehouse, root / "rest", s3=s3,
            host=config.host, port=config.rest_port, heap_mb=config.rest_heap_mb,
        )  # fmt: skip
        stack.enter_context(rest)
        log.info("Iceberg REST catalog at %s over %s", rest.uri, iceberg_location(warehouse))
        server = TrinoServer(
            server_dir, java_home, root / "server",
            {config.catalog: lakehouse_catalog(rest.uri, s3)},
            secret_env={S3_SECRET_ENV: s3.secret_key} if s3 else None,
            host=config.host, port=config.port, heap_mb=config.heap_mb,
            start_timeout_s=config.start_timeout_s,
        )  # fmt: skip
        yield LocalTrino(rest, stack.enter_context(server))
