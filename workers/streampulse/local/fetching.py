"""Fetching engines from Maven Central into the cache, once: locks, Maven runs, progress.

Every engine is fetched with Maven itself (``mvn``, the registry's own client): a generated pom
names the artifacts and ``dependency:copy-dependencies`` copies them with their dependencies, or
``dependency:copy`` fetches one archive. A directory is finished with a stamp file, under an
exclusive lock, so concurrent launchers fetch once and a half-done fetch is redone.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from streampulse.errors import LauncherError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# The plugin that copies artifacts; pinned, so every machine runs the same one.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MIB = 1 << 20


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive file lock, so concurrent launchers fetch once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mvn(what: str) -> str:
    found = shutil.which("mvn")
    if found is None:
        raise LauncherError(f"Maven (mvn) is needed to fetch {what}; put it on PATH")
    return found


def _run_maven(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LauncherError(
            f"fetching {what} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def copy_dependencies(pom: Path, libs: Path, what: str) -> None:
    """Copy the runtime dependencies ``pom`` names, with theirs, into ``libs``."""
    _run_maven(
        [_mvn(what), "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        what,
    )  # fmt: skip


def copy_artifact(
    coordinates: str,
    out_dir: Path,
    repository: Path,
    what: str,
    *,
    progress: Callable[[str], None],
    every_s: float = 10.0,
) -> Path:
    """Fetch one artifact (``group:artifact:version:type``) into ``out_dir`` and return it.

    Maven downloads into ``repository``, a local repository of its own (removed by the caller
    once done, so a large archive is not kept twice); while it does, ``progress`` is told every
    ``every_s`` seconds how many MiB have arrived, so a long download is never silent.
    """
    group, artifact, version, kind = coordinates.split(":")
    pom = repository / "fetch-pom.xml"
    repository.mkdir(parents=True, exist_ok=True)
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>io.streampulse.cache</groupId><artifactId>fetch</artifactId>"
        "<version>1</version></project>\n"
    )
    arriving = repository.joinpath(*group.split("."), artifact, version)
    done = threading.Event()

    def report() -> None:
        started = time.monotonic()
        while not done.wait(every_s):
            size = sum(p.stat().st_size for p in arriving.glob("*") if p.is_file())
            elapsed = time.monotonic() - started
            progress(
                f"{what}: {size / _MIB:.0f} MiB downloaded in {elapsed:.0f}s "
                f"({size / _MIB / elapsed:.1f} MiB/s)"
            )

    reporter = threading.Thread(target=report, name="fetch-progress", daemon=True)
    reporter.start()
    try:
        _run_maven(
            [_mvn(what), "-q", "-B", "-f", str(pom), f"{_DEPENDENCY_PLUGIN}:copy",
             f"-Dartifact={coordinates}", f"-DoutputDirectory={out_dir}",
             f"-Dmaven.repo.local={repository}"],
            what,
        )  # fmt: skip
    finally:
        done.set()
        reporter.join()
    return out_dir / f"{artifact}-{version}.{kind}"
