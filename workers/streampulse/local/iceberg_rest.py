"""The Iceberg REST catalog in front of Trino: Paimon's Iceberg metadata, served read-only.

Paimon publishes Iceberg metadata for every table with ``metadata.iceberg.storage`` set to
``hadoop-catalog``, laid out as an Iceberg Hadoop catalog under ``<warehouse>/iceberg``. Trino's
Iceberg connector reads a REST catalog; Apache Iceberg publishes the REST protocol's server side
(``RESTCatalogAdapter`` and ``RESTCatalogServlet``, in iceberg-core's test jar) on Maven Central.
``java/TableCatalogServer.java`` puts a Hadoop catalog behind them on Jetty, bound to one
address, offering table reads only (no views, no writes).

Fetched once into ``<cache>/iceberg-rest-<iceberg version>-<hash>``: a generated pom and
``mvn dependency:copy-dependencies`` bring the jars (Hadoop 3.5 for its client, which runs on
Java 25, and S3A with the AWS SDK for s3:// warehouses), and ``javac`` compiles the server class.
The hash covers the pins and the class's source, so a change to either fetches anew.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from streampulse.errors import LakehouseError, LauncherError
from streampulse.local.fetching import copy_dependencies, locked
from streampulse.local.services import JavaServer

log = logging.getLogger(__name__)

ICEBERG_VERSION = "1.10.0"
JETTY_VERSION = "11.0.25"  # Jetty 11: the jakarta.servlet 5 API the Iceberg servlet is built on
HADOOP_VERSION = "3.5.0"  # 3.4.1's client fails on Java 25, the Java Trino needs
AWS_SDK_VERSION = "2.33.0"  # S3A's transfer manager; the rest of the SDK is iceberg-aws-bundle
SLF4J_VERSION = "2.0.17"
SERVER_CLASS = "streampulse.rest.TableCatalogServer"
SERVER_SOURCE = Path(__file__).parent / "java" / "TableCatalogServer.java"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streampulse.cache</groupId>
  <artifactId>iceberg-rest-catalog</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-core</artifactId>
      <version>{iceberg}</version></dependency>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-core</artifactId>
      <version>{iceberg}</version><classifier>tests</classifier></dependency>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-aws-bundle</artifactId>
      <version>{iceberg}</version></dependency>
    <dependency><groupId>org.eclipse.jetty</groupId><artifactId>jetty-servlet</artifactId>
      <version>{jetty}</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-client-api</artifactId>
      <version>{hadoop}</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-client-runtime</artifactId>
      <version>{hadoop}</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-aws</artifactId>
      <version>{hadoop}</version>
      <exclusions><exclusion><groupId>software.amazon.awssdk</groupId><artifactId>*</artifactId>
      </exclusion></exclusions></dependency>
    <dependency><groupId>software.amazon.awssdk</groupId><artifactId>s3-transfer-manager</artifactId>
      <version>{aws_sdk}</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>
      </exclusions></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""


@dataclass(frozen=True)
class IcebergRestHome:
    """The fetched jars and the compiled server class."""

    libs: Path
    classes: Path

    @property
    def classpath(self) -> str:
        return f"{self.classes}:{self.libs}/*"


def _pom() -> str:
    return _POM.format(
        iceberg=ICEBERG_VERSION,
        jetty=JETTY_VERSION,
        hadoop=HADOOP_VERSION,
        aws_sdk=AWS_SDK_VERSION,
        slf4j=SLF4J_VERSION,
    )


def _javac(java_home: Path | None) -> str:
    if java_home is not None and (java_home / "bin" / "javac").is_file():
        return str(java_home / "bin" / "javac")
    found = shutil.which("javac")
    if found is None:
        raise LauncherError("javac (a JDK 17 or newer) is needed to build the REST catalog")
    return found


def ensure_iceberg_rest(cache_dir: Path, java_home: Path | None = None) -> IcebergRestHome:
    """The REST catalog's jars and class, fetched and compiled the first time (about 15 s)."""
    pom = _pom()
    digest = hashlib.sha256((pom + SERVER_SOURCE.read_text()).encode()).hexdigest()[:12]
    home_dir = cache_dir / f"iceberg-rest-{ICEBERG_VERSION}-{digest}"
    home = IcebergRestHome(libs=home_dir / "libs", classes=home_dir / "classes")
    stamp = home_dir / ".complete"
    if stamp.exists():
        return home
    with locked(home_dir.parent / f"{home_dir.name}.lock"):
        if stamp.exists():
            return home
        shutil.rmtree(home_dir, ignore_errors=True)
        home_dir.mkdir(parents=True)
        (home_dir / "pom.xml").write_text(pom)
        log.info(
            "fetching the Iceberg REST catalog (Iceberg %s) into %s", ICEBERG_VERSION, home_dir
        )
        started = time.monotonic()
        copy_dependencies(home_dir / "pom.xml", home.libs, f"Iceberg {ICEBERG_VERSION} jars")
        compiled = subprocess.run(
            [_javac(java_home), "-nowarn", "--release", "17", "-cp", f"{home.libs}/*",
             "-d", str(home.classes), str(SERVER_SOURCE)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if compiled.returncode != 0:
            raise LauncherError(f"compiling the REST catalog failed:\n{compiled.stderr[-3000:]}")
        stamp.write_text(f"{time.monotonic() - started:.1f}s\n")
    return home


def warehouse_uri(warehouse: str) -> str:
    """The warehouse as a URI: a local path becomes ``file:///...``.

    Paimon writes the paths in its Iceberg metadata as it was given the warehouse, and Trino
    opens a path only by its scheme, so a writer of tables Trino reads is given this form.
    """
    if "://" in warehouse or warehouse.startswith("file:"):
        return warehouse.rstrip("/")
    return Path(warehouse).resolve().as_uri()


def iceberg_location(warehouse: str) -> str:
    """Where Paimon puts a warehouse's Iceberg metadata, as a URI (``file:`` or ``s3:``)."""
    return warehouse_uri(warehouse) + "/iceberg"


@dataclass(frozen=True)
class S3Access:
    """An S3-compatible store's endpoint and keys; ``secret_key`` never reaches a log or argv."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str


class IcebergRestCatalog(JavaServer):
    """The REST catalog over one warehouse's Iceberg metadata; a context manager."""

    name = "iceberg-rest"

    def __init__(
        self,
        home: IcebergRestHome,
        java_home: Path,
        warehouse: str,
        data_dir: Path,
        *,
        s3: S3Access | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        heap_mb: int = 256,
        start_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(java_home, data_dir, host=host, port=port, heap_mb=heap_mb,
                         start_timeout_s=start_timeout_s, stop_timeout_s=15.0)  # fmt: skip
        self.home = home
        self.location = iceberg_location(warehouse)
        self.s3 = s3

    def _command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            str(self.java_home / "bin" / "java"), f"-Xmx{self.heap_mb}m",
            "--enable-native-access=ALL-UNNAMED",  # Hadoop's native loader, else a warning
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp", self.home.classpath, SERVER_CLASS,
            "--warehouse", self.location, "--bind", self.host, "--port", str(self.port),
        ]  # fmt: skip
        env: dict[str, str] = {}
        if self.s3 is not None:
            argv += ["--s3-region", self.s3.region]
            if self.s3.endpoint:
                argv += ["--s3-endpoint", self.s3.endpoint]
            env = {"AWS_ACCESS_KEY_ID": self.s3.access_key,
                   "AWS_SECRET_ACCESS_KEY": self.s3.secret_key}  # fmt: skip
        return argv, env

    def _ready(self) -> bool:
        try:
            response = httpx.get(f"{self.uri}/v1/config", timeout=2.0, trust_env=False)
        except httpx.HTTPError as exc:
            raise LakehouseError(str(exc)) from exc
        return response.status_code == 200
