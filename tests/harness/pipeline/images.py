"""Test-only images for the pipeline on the cluster, built here from local bases and cached inputs.

None of them ships: they stand in for what a user's cluster has around the pipeline.

- ``kafka``: one KRaft broker run by the project's own launcher (``streampulse local kafka
  --bind-host 0.0.0.0 --advertised-host <Service>``): the Java 17 + Python 3.11 base the local
  Flink base uses, the workers image's Python installation (the ``streampulse`` package built
  from this clone) and the Kafka jars cached under ``$STREAMPULSE_CACHE_DIR/kafka-<version>``;
- ``s3``: versitygw (the S3 server the integration tests use) from
  ``$STREAMPULSE_CACHE_DIR/versitygw-<version>`` on the Debian base, posix backend;
- ``replay``: the workers image plus a fixed capture (``CAPTURES`` from
  ``$STREAMPULSE_REPLAY__DATA_DIR``) and the Jetstream zstd dictionary, serving them once, as
  fast as it can (``stream=recorded``, ``rate=max``, no loop).

Each is built from a temporary context with ``--network none`` and an explicit tag; cached layers
make a second build a few seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster import Cluster
from tests.harness.cluster.bases import BASES, ensure_base
from tests.harness.cluster.common import ClusterError, Progress, cache_root, run_step
from tests.harness.cluster.engine import Engine
from tests.harness.images.flinkbase import FLINK_OS
from tests.harness.s3 import VERSITYGW_VERSION, ensure_versitygw

KAFKA_VERSION = "4.4.0"  # streampulse.settings.LocalSettings.kafka_version
KAFKA_PORT = 9092
S3_PORT = 9000
REPLAY_PORT = 6008
CAPTURES = (
    "readme_examples_2024-09.jsonl",
    "golden_10events_2026-05-25.jsonl",
    "prod_capture_2026-07-04.jsonl",
)
"""The fixed capture the replay serves: every capture of the shared data set (167 lines over
three days, so the job's windows of the two earlier days close)."""
DICTIONARY = "zstd_dictionary_v1.bin"
IN_IMAGE_CACHE = "/opt/streampulse-cache"
REPLAY_DATA = "/opt/streampulse/jetstream"

KAFKA_DOCKERFILE = f"""\
ARG OS_IMAGE
ARG WORKERS_IMAGE
FROM ${{WORKERS_IMAGE}} AS workers
FROM ${{OS_IMAGE}}
RUN groupadd --system --gid 10001 streampulse \\
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \\
        --shell /usr/sbin/nologin streampulse
# the workers image's Python installation: the streampulse package of this clone and its deps
COPY --from=workers /usr/local /usr/local
COPY kafka-{KAFKA_VERSION}/ {IN_IMAGE_CACHE}/kafka-{KAFKA_VERSION}/
ENV PYTHONPATH=/usr/local/lib/python3.11/site-packages PYTHONDONTWRITEBYTECODE=1 \\
    HOME=/tmp STREAMPULSE_CACHE_DIR={IN_IMAGE_CACHE} STREAMPULSE_LOG_FORMAT=text \\
    STREAMPULSE_LOCAL__KAFKA_VERSION={KAFKA_VERSION}
USER 10001:10001
ENTRYPOINT ["streampulse", "local", "kafka"]
"""

S3_DOCKERFILE = f"""\
ARG OS_IMAGE
FROM ${{OS_IMAGE}}
COPY versitygw /usr/local/bin/versitygw
USER 10001:10001
EXPOSE {S3_PORT}
ENTRYPOINT ["/usr/local/bin/versitygw"]
"""

REPLAY_DOCKERFILE = f"""\
ARG WORKERS_IMAGE
FROM ${{WORKERS_IMAGE}}
COPY jetstream/ {REPLAY_DATA}/
ENV STREAMPULSE_REPLAY__DATA_DIR={REPLAY_DATA} STREAMPULSE_REPLAY__STREAM=recorded \\
    STREAMPULSE_REPLAY__RATE=max STREAMPULSE_REPLAY__LOOP=false \\
    STREAMPULSE_REPLAY__HOST=0.0.0.0 STREAMPULSE_REPLAY__PORT={REPLAY_PORT}
EXPOSE {REPLAY_PORT}
CMD ["replay"]
"""


@dataclass(frozen=True)
class TestImages:
    kafka: str
    s3: str
    replay: str
    seconds: float

    @property
    def tags(self) -> tuple[str, ...]:
        """The images built (upstream mode builds only the replay: Kafka and S3 are managed)."""
        return tuple(tag for tag in (self.kafka, self.s3, self.replay) if tag)


def capture_dir() -> Path:
    """``$STREAMPULSE_REPLAY__DATA_DIR`` (the Makefile points it at ../shared/data/jetstream)."""
    configured = os.environ.get("STREAMPULSE_REPLAY__DATA_DIR")
    if not configured:
        raise ClusterError("STREAMPULSE_REPLAY__DATA_DIR is not set (make sets it)")
    path = Path(configured)
    missing = [name for name in (*CAPTURES, DICTIONARY) if not (path / name).is_file()]
    if missing:
        raise ClusterError(f"{path} lacks {', '.join(missing)}")
    return path


@contextmanager
def _context(files: dict[str, Path], dockerfile: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="streampulse-test-image-"))
    try:
        (root / "Dockerfile").write_text(dockerfile)
        for name, source in files.items():
            target = root / name
            if source.is_dir():
                shutil.copytree(source, target, symlinks=False)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tag(name: str, dockerfile: str, files: dict[str, Path], *bases: str) -> str:
    """``streampulse-test/<name>:<hash>``: the hash of the recipe and its inputs' names, sizes and
    modification times (a changed input is a new tag; an old tag is never reused for it)."""
    digest = hashlib.sha256(dockerfile.encode())
    for base in bases:
        digest.update(base.encode())
    for rel, source in sorted(files.items()):
        paths = sorted(source.rglob("*")) if source.is_dir() else [source]
        for path in paths:
            if path.is_file():
                stat = path.stat()
                digest.update(f"{rel}:{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"streampulse-test/{name}:{digest.hexdigest()[:12]}"


def _build(
    engine: Engine,
    name: str,
    dockerfile: str,
    files: dict[str, Path],
    args: dict[str, str],
    say: Progress,
    logs: Path,
) -> str:
    image_ids = [engine.docker("image", "inspect", "-f", "{{.Id}}", b).stdout.strip()
                 for b in args.values()]  # fmt: skip
    tag = _tag(name, dockerfile, files, *image_ids)
    if engine.docker("image", "inspect", tag, check=False).returncode == 0:
        say(f"test image {tag}: present")
        return tag
    argv = [engine.cli, "build", "--network", "none", "--force-rm", "-t", tag]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    with _context(files, dockerfile) as context, say.step(f"test image {tag}"):
        run_step([*argv, str(context)], log=logs / f"test-{name}.log", say=say,
                 label=f"docker build {name}", env=engine.env(), timeout_s=900)  # fmt: skip
    repository = tag.rsplit(":", 1)[0]
    listed = engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository)
    for old in listed.stdout.split():
        if old != tag:  # an earlier recipe's image: its own layers go
            engine.docker("image", "rm", old, check=False)
    return tag


def build_test_images(
    engine: Engine,
    workers_image: str,
    cache_dir: Path | None = None,
    say: Progress | None = None,
    *,
    replay_only: bool = False,
) -> TestImages:
    """The Kafka, S3 and replay images (``workers_image`` is the workers image just built);
    with ``replay_only`` the replay alone (upstream mode)."""
    say = say or Progress(prefix="pipeline")
    started = time.monotonic()
    root = cache_root(cache_dir)
    logs = root / "images-logs"
    logs.mkdir(parents=True, exist_ok=True)
    if replay_only:
        replay = _replay(engine, workers_image, say, logs)
        return TestImages("", "", replay, round(time.monotonic() - started, 1))
    kafka_home = root / f"kafka-{KAFKA_VERSION}"
    if not (kafka_home / ".complete").is_file():
        raise ClusterError(f"no Kafka jars in {kafka_home}: run `make kafka`")
    java_python = ensure_base(engine, FLINK_OS, cache_dir, say)
    kafka = _build(
        engine,
        "kafka",
        KAFKA_DOCKERFILE,
        {f"kafka-{KAFKA_VERSION}": kafka_home},
        {"OS_IMAGE": java_python, "WORKERS_IMAGE": workers_image},
        say,
        logs,
    )
    versitygw = ensure_versitygw(cache_dir)
    s3 = _build(
        engine,
        f"s3-versitygw-{VERSITYGW_VERSION.removeprefix('v')}",
        S3_DOCKERFILE,
        {"versitygw": versitygw},
        {"OS_IMAGE": ensure_base(engine, BASES["debian"], cache_dir, say)},
        say,
        logs,
    )
    replay = _replay(engine, workers_image, say, logs)
    return TestImages(kafka, s3, replay, round(time.monotonic() - started, 1))


def _replay(engine: Engine, workers_image: str, say: Progress, logs: Path) -> str:
    data = capture_dir()
    files = {f"jetstream/{name}": data / name for name in (*CAPTURES, DICTIONARY)}
    return _build(
        engine, "replay", REPLAY_DOCKERFILE, files, {"WORKERS_IMAGE": workers_image}, say, logs
    )


def load_images(cluster: Cluster, tags: list[str], say: Progress) -> float:
    """Every image into the node in one ``docker save | ctr images import`` (layers the images
    share are sent once); the seconds it took."""
    started = time.monotonic()
    engine = cluster.engine
    with say.step(f"load {len(tags)} images into the node"):
        save = subprocess.Popen(
            [engine.cli, "save", *tags], env=engine.env(), stdout=subprocess.PIPE
        )
        try:
            load = subprocess.run(
                [engine.cli, "exec", "-i", cluster.container, "ctr", "--namespace=k8s.io",
                 "images", "import", "-"],
                env=engine.env(), stdin=save.stdout, capture_output=True, text=True,
                timeout=1200, check=False,
            )  # fmt: skip
        finally:
            if save.stdout is not None:
                save.stdout.close()
            save.wait(timeout=1200)
    if save.returncode != 0 or load.returncode != 0:
        raise ClusterError(f"loading {tags} failed: {load.stderr[-2000:]}")
    listed = cluster.exec_node("ctr", "--namespace=k8s.io", "images", "ls", "-q").stdout.split()
    missing = [t for t in tags if t not in listed and f"docker.io/{t}" not in listed]
    if missing:
        raise ClusterError(f"not in the node after the import: {missing}")
    return time.monotonic() - started
