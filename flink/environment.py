"""The Flink job's own environment: a pinned venv and the connector jars, built into the cache.

Standard library only, so any Python 3.11 runs it (``make flink-env`` does)::

    python flink/environment.py            # build what is missing, print the paths as JSON

The venv (``$STREAMPULSE_CACHE_DIR/flink-venv-<hash>``) holds ``apache-flink`` from
``flink/requirements.txt`` only: the cache is shared by every checkout, so the job package is
taken from the checkout that runs it (``PYTHONPATH``, see ``FlinkEnvironment.process_env``).
The jars (``$STREAMPULSE_CACHE_DIR/flink-jars-<hash>``) come from Maven Central: a generated
pom names the Kafka connector and the Paimon connector, and ``mvn dependency:copy-dependencies``
copies them with their runtime dependencies into ``lib/``, and Flink's S3 file system into
``plugins/s3-fs-hadoop/``: a file system is a plugin, loaded in its own class loader from
``FLINK_PLUGINS_DIR`` (``FlinkEnvironment.process_env`` points the job there), never from
``pipeline.jars``. Both directories are keyed by a hash of what defines them and finished with a
stamp file, so a second run does nothing and a changed pin builds anew.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
# Part of the venv's hash: what goes into the venv besides the requirements.
VENV_LAYOUT = "requirements only; the job package from PYTHONPATH"

FLINK_VERSION = "2.1.3"
FLINK_MINOR = "2.1"
KAFKA_CONNECTOR_VERSION = f"5.0.0-{FLINK_MINOR}"
PAIMON_VERSION = "1.3.0"
# Paimon's own S3 file system (shaded hadoop-aws); 1.3.0 is not on Maven Central, and 1.3.1 is a
# bug-fix release of the same line, so the plugin's FileIO interface is the same.
PAIMON_S3_VERSION = "1.3.1"

# Flink's S3 file system (s3:// checkpoints and savepoints). Maven Central has no 2.1.2 or 2.1.3
# of it; 2.1.1 is the same release line, a plugin loaded in its own class loader against Flink's
# stable FileSystem interface (the Flink image uses the same jar).
S3_PLUGIN_VERSION = "2.1.1"
# plugins/<name>/ -> (groupId, artifactId, version): one jar each, without dependencies
PLUGINS: dict[str, tuple[str, str, str]] = {
    "s3-fs-hadoop": ("org.apache.flink", "flink-s3-fs-hadoop", S3_PLUGIN_VERSION),
}

# (groupId, artifactId, version); their runtime dependencies come along, less EXCLUDED.
JARS: tuple[tuple[str, str, str], ...] = (
    ("org.apache.flink", "flink-connector-kafka", KAFKA_CONNECTOR_VERSION),
    # provided by the connector's pom, but not part of the Flink distribution's lib/
    ("org.apache.flink", "flink-connector-base", FLINK_VERSION),
    ("org.apache.paimon", f"paimon-flink-{FLINK_MINOR}", PAIMON_VERSION),
    ("org.apache.paimon", "paimon-s3", PAIMON_S3_VERSION),
    # Paimon's catalog uses Hadoop's Configuration class; this is the pre-bundled Hadoop the
    # Paimon docs name for Flink.
    ("org.apache.flink", "flink-shaded-hadoop-2-uber", "2.8.3-10.0"),
)

# Left out of the copy with everything they pull in: Paimon's query service (netty, guava) is
# not used by the job, and Flink's lib/ already has slf4j.
EXCLUDED = (
    ("org.apache.paimon", "paimon-service-client"),
    ("org.apache.paimon", "paimon-service-runtime"),
    ("org.slf4j", "slf4j-api"),
    ("org.slf4j", "slf4j-log4j12"),
)

_POM_HEAD = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streampulse.cache</groupId>
  <artifactId>flink-job-jars</artifactId>
  <version>1</version>
  <dependencies>
"""
_POM_DEP = """    <dependency>
      <groupId>{0}</groupId><artifactId>{1}</artifactId><version>{2}</version>
      <exclusions>{3}</exclusions>
    </dependency>
"""
_POM_EXCLUSION = "<exclusion><groupId>{0}</groupId><artifactId>{1}</artifactId></exclusion>"
_POM_TAIL = "  </dependencies>\n</project>\n"


class FlinkEnvironmentError(RuntimeError):
    """Building the Flink environment failed; the message says which step and why."""


@dataclass(frozen=True)
class FlinkEnvironment:
    python: Path
    jars_dir: Path
    job_dir: Path = HERE

    @property
    def plugins_dir(self) -> Path:
        """Flink's plugins (the S3 file system), one directory each."""
        return self.jars_dir.parent / "plugins"

    def process_env(self) -> dict[str, str]:
        """Environment for a job or query process: the job package of this checkout, and the
        plugins directory, which PyFlink passes to the JVM it starts."""
        return {"PYTHONPATH": str(self.job_dir), "FLINK_PLUGINS_DIR": str(self.plugins_dir)}

    @property
    def jars(self) -> list[Path]:
        return sorted(self.jars_dir.glob("*.jar"))

    def pipeline_jars(self) -> str:
        """The ``pipeline.jars`` value: ``file://`` URLs separated by semicolons."""
        return ";".join(jar.as_uri() for jar in self.jars)


def cache_dir() -> Path:
    configured = os.environ.get("STREAMPULSE_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "streampulse"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def pom() -> str:
    exclusions = "".join(_POM_EXCLUSION.format(*excluded) for excluded in EXCLUDED)
    return _POM_HEAD + "".join(_POM_DEP.format(*jar, exclusions) for jar in JARS) + _POM_TAIL


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FlinkEnvironmentError(
            f"{what} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def venv_dir(root: Path) -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return root / f"flink-venv-{_digest(REQUIREMENTS.read_text(), version, VENV_LAYOUT)}"


def jars_dir(root: Path) -> Path:
    """``<root>/flink-jars-<hash>/lib``'s parent; the hash covers the pom and the plugins."""
    return root / f"flink-jars-{_digest(pom(), json.dumps(PLUGINS, sort_keys=True))}"


def ensure_venv(root: Path) -> Path:
    """The venv's python, creating the venv the first time."""
    home = venv_dir(root)
    python = home / "bin" / "python"
    stamp = home / ".complete"
    if stamp.exists():
        return python
    with _locked(home.with_suffix(".lock")):
        if stamp.exists():
            return python
        started = time.monotonic()
        shutil.rmtree(home, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(home)], "creating the Flink venv")
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run([*pip, "-r", str(REQUIREMENTS)], "installing apache-flink")
        stamp.write_text(f"{time.monotonic() - started:.1f}s\n")
    return python


def ensure_jars(root: Path) -> Path:
    """The directory of connector jars, fetching them from Maven Central the first time."""
    home = jars_dir(root)
    libs = home / "lib"
    stamp = home / ".complete"
    if stamp.exists():
        return libs
    with _locked(home.with_suffix(".lock")):
        if stamp.exists():
            return libs
        if shutil.which("mvn") is None:
            raise FlinkEnvironmentError("Maven (mvn) is needed to fetch the Flink connectors")
        started = time.monotonic()
        shutil.rmtree(libs, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(pom())
        _run(
            ["mvn", "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies"]
            + [f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            "fetching the Flink connector jars",
        )
        for name, (group, artifact, version) in PLUGINS.items():
            plugin = home / "plugins" / name
            shutil.rmtree(plugin, ignore_errors=True)
            _run(
                ["mvn", "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy"]
                + [f"-Dartifact={group}:{artifact}:{version}", f"-DoutputDirectory={plugin}"],
                f"fetching the Flink plugin {artifact}",
            )
        stamp.write_text(f"{time.monotonic() - started:.1f}s\n")
    return libs


def ensure(root: Path | None = None) -> FlinkEnvironment:
    root = root or cache_dir()
    return FlinkEnvironment(python=ensure_venv(root), jars_dir=ensure_jars(root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    env = ensure(args.cache_dir)
    found = {
        "python": str(env.python),
        "jars": [str(j) for j in env.jars],
        "plugins": str(env.plugins_dir),
        "env": env.process_env(),
    }
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
