"""A real Apache Kafka broker as a local process.

Kafka's jars come from Maven Central: a generated pom names ``org.apache.kafka:kafka_2.13`` and
Maven copies it with all its dependencies into the cache, once. The broker runs in KRaft mode as a
single combined broker and controller on free loopback ports.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streampulse.errors import LauncherError
from streampulse.local.fetching import copy_dependencies, locked
from streampulse.local.ports import free_port

log = logging.getLogger(__name__)

_LOG4J_VERSION = "2.24.3"
_SLF4J_VERSION = "2.0.17"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streampulse.cache</groupId>
  <artifactId>kafka-distribution</artifactId>
  <version>{version}</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2_YAML = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def ensure_kafka(cache_dir: Path, version: str) -> Path:
    """Return the directory of Kafka's jars, fetching them from Maven Central the first time."""
    home = cache_dir / f"kafka-{version}"
    libs = home / "libs"
    stamp = home / ".complete"
    if stamp.exists():
        return libs
    with locked(home.with_suffix(".lock")):
        if stamp.exists():
            return libs
        shutil.rmtree(libs, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(
            _POM.format(version=version, slf4j=_SLF4J_VERSION, log4j=_LOG4J_VERSION)
        )
        log.info("fetching Apache Kafka %s from Maven Central into %s", version, home)
        started = time.monotonic()
        copy_dependencies(home / "pom.xml", libs, f"Kafka {version}")
        (home / "log4j2.yaml").write_text(_LOG4J2_YAML)
        stamp.write_text(f"{time.monotonic() - started:.1f}s\n")
    return libs


@dataclass
class KafkaBroker:
    """One KRaft broker+controller process; ``start()`` blocks until it serves metadata."""

    libs: Path
    data_dir: Path
    port: int = 0
    heap_mb: int = 1024
    java_home: Path | None = None
    startup_timeout_s: float = 90.0
    # Loopback on a machine; in a pod 0.0.0.0, advertised as the pod's Service name.
    bind_host: str = "127.0.0.1"
    advertised_host: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.advertised_host or self.bind_host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def _java(self) -> str:
        if self.java_home is not None:
            return str(self.java_home / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise LauncherError("no java on PATH; Kafka needs Java 17 or newer")
        return found

    def _write_config(self, controller_port: int) -> Path:
        config = self.data_dir / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.bind_host}:{self.port},CONTROLLER://127.0.0.1:{controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap_servers}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return config

    def start(self) -> KafkaBroker:
        """Format storage if new, start the broker, and wait until it answers metadata."""
        if self._process is not None:
            raise LauncherError("broker already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        config = self._write_config(free_port())
        java = self._java()
        log4j = f"-Dlog4j2.configurationFile={self.libs.parent / 'log4j2.yaml'}"
        classpath = f"{self.libs}/*"
        if not (self.data_dir / "log" / "meta.properties").exists():
            cluster_id = uuid.uuid4().hex[:22]
            formatted = subprocess.run(
                [java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "format"]
                + ["-t", cluster_id, "-c", str(config)],
                capture_output=True,
                text=True,
                check=False,
            )
            if formatted.returncode != 0:
                raise LauncherError(f"formatting Kafka storage failed: {formatted.stdout}")
        self._log_file = self.log_path.open("ab")
        heap = f"-Xmx{self.heap_mb}m"
        self._process = subprocess.Popen(
            [java, heap, "-Xms256m", "-XX:+UseG1GC", log4j, "-cp", classpath]
            + ["kafka.Kafka", str(config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        log.info("Kafka broker ready at %s (pid %d)", self.bootstrap_servers, self._process.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        # librdkafka would log every refused connection while the JVM starts; only our own
        # timeout below is worth reading.
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise LauncherError(f"Kafka exited with {self._process.returncode}:\n{tail}")
            try:
                metadata = admin.list_topics(timeout=1.0)
            except KafkaException:
                continue  # not serving yet
            if metadata.brokers:
                return
        self.stop()
        raise LauncherError(f"Kafka did not serve metadata within {self.startup_timeout_s}s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wait_exit(self, timeout_s: float) -> int | None:
        """The broker's exit code once it exits by itself (a failed log directory, a full disk
        among them, halts it), waiting up to ``timeout_s``; None while it still runs."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout_s``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
