"""The whole stage of the system test: images, cluster, infrastructure, operator and the Flink
operator's stand-in, set up once and torn down at the end (docs/cluster.md, section 5)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streampulse.enrich.records import select_post
from streampulse.ingest.normalizing import normalize
from streampulse.replay import build_stream
from streampulse.settings import ReplaySettings
from tests.harness.cluster import Cluster, Progress, ensure_engine
from tests.harness.cluster.common import default_cache_dir, run_capture
from tests.harness.flink import flink_environment
from tests.harness.images import ImageResult, build_images
from tests.harness.pipeline import infra as infra_
from tests.harness.pipeline import kube, report, target
from tests.harness.pipeline.flinkdriver import FlinkDriver
from tests.harness.pipeline.flinkoperator import FlinkOperatorWatch
from tests.harness.pipeline.images import CAPTURES, TestImages, build_test_images, capture_dir
from tests.harness.pipeline.images import load_images as load_into_node
from tests.harness.pipeline.resource import (
    OPERATOR_NAMESPACE,
    RELEASE,
    PipelineSpec,
    helm_binary,
)

FLINK_CRDS = ("flink-flinkdeployment.yaml", "flink-flinksessionjob.yaml")


def workdir_of_captures(data: Path) -> Path:
    """A directory holding only the captures the replay image serves."""
    target = Path(tempfile.mkdtemp(prefix="streampulse-captures-"))
    for name in CAPTURES:
        shutil.copy2(data / name, target / name)
    return target


def known_posts() -> set[str]:
    """The event ids of the posts the replay serves and enrich enriches (N of them)."""
    data = capture_dir()
    # the replay image holds exactly CAPTURES of this directory (and the dictionary)
    staged = workdir_of_captures(data)
    try:
        stream = build_stream(ReplaySettings(data_dir=staged, stream="recorded", rate="max"))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    out = set()
    for event in stream.events:
        normalized = normalize(event.raw, 0)
        if select_post(orjson.dumps(normalized)) is not None:
            out.add(str(normalized["event_id"]))
    return out


@dataclass
class Stage:
    cluster: Cluster
    started_cluster: bool
    built: dict[str, ImageResult]
    test_images: TestImages
    infra: infra_.Infra
    spec: PipelineSpec
    driver: FlinkDriver | FlinkOperatorWatch
    """Local mode: the Flink operator's stand-in; upstream mode: the real one, watched."""
    workdir: Path
    say: Progress
    results: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    pods_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: set[str] = field(default_factory=set)

    @property
    def workers_image(self) -> str:
        return self.built["workers"].tag

    @property
    def cache_dir(self) -> Path:
        return default_cache_dir()

    @property
    def replay_rate(self) -> float:
        return float(infra_.REPLAY_RATE)

    @property
    def enrich_labels(self) -> dict[str, str]:
        """The labels the models' NetworkPolicy lets in: the enrich worker's selector."""
        return {"streampulse.io/instance": self.spec.name, "app.kubernetes.io/component": "enrich"}

    @property
    def pipeline_namespace(self) -> list[dict[str, Any]]:
        """The restricted namespace of the StreamPulse and its lakehouse credentials."""
        return [
            infra_.namespace(self.spec.namespace),
            infra_.credentials(self.infra, self.spec.namespace),
        ]

    def observe_pods(self) -> int:
        """Remember every pod of the pipeline seen so far (by uid); how many."""
        for pod in kube.pods(self.cluster, self.spec.namespace):
            labels = pod["metadata"].get("labels", {})
            if "streampulse.io/instance" in labels and infra_.APP_LABEL not in labels:
                self.pods_seen[pod["metadata"]["uid"]] = pod
        return len(self.pods_seen)

    def save(self) -> None:
        report.save(self.results, self.details)


def _cluster_in_thread(say: Progress) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def up() -> None:
        started = time.monotonic()
        try:
            if target.upstream():
                box["started"], box["cluster"] = False, target.attach_kind(say)
            else:
                existing = Cluster.existing()
                box["started"] = existing is None
                box["cluster"] = existing or Cluster.up(say=say)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        box["seconds"] = round(time.monotonic() - started, 1)

    thread = threading.Thread(target=up, name="cluster-up", daemon=True)
    thread.start()
    return thread, box


# the images this pipeline runs: its StreamPulse turns Trino off (the Trino image has its own
# system test, tests/system/test_trino_image.py, which make test-cluster runs after this one)
PIPELINE_IMAGES = ("operator", "workers", "models", "flink")


def _images(cache: Path, say: Progress) -> tuple[dict[str, ImageResult], TestImages]:
    upstream = target.upstream()
    with say.step("project images from this clone (tests.harness.images.build_images)"):
        built = build_images(cache, PIPELINE_IMAGES, say=Progress(prefix="images"),
                             bases="registry" if upstream else "local")  # fmt: skip
    engine = ensure_engine(cache)
    tests_images = build_test_images(engine, built["workers"].tag, cache, say,
                                     replay_only=upstream)  # fmt: skip
    return built, tests_images


@contextmanager
def stage(workdir: Path, crds_dir: Path) -> Iterator[Stage]:
    say = Progress(prefix="pipeline")
    cache = default_cache_dir()
    thread, box = _cluster_in_thread(Progress(prefix="cluster"))
    built, tests_images = _images(cache, say)
    flink_env = flink_environment(cache)
    thread.join()
    if "error" in box:
        raise box["error"]
    cluster: Cluster = box["cluster"]
    spec = PipelineSpec()
    upstream = target.upstream()
    infra = (
        infra_.Infra.managed_by_operator(spec.name, spec.namespace) if upstream else infra_.Infra()
    )
    flink = f"{spec.name}-flink"
    driver = (
        FlinkOperatorWatch(cluster, spec.namespace, flink, say)
        if upstream
        else FlinkDriver(cluster, spec.namespace, flink, flink_env.python, workdir / "flink", say)
    )
    run = Stage(cluster, bool(box["started"]), built, tests_images, infra, spec, driver,
                workdir, say)  # fmt: skip
    run.results["cluster_ready_s"] = box["seconds"]
    run.results["images_built"] = len(built)
    run.details["mode"] = target.mode()
    run.details["images"] = {name: round(r.seconds, 1) for name, r in built.items()}
    try:
        tags = [r.tag for r in built.values()] + list(tests_images.tags)
        run.details["images_loaded_s"] = round(load_into_node(cluster, tags, say), 1)
        if not upstream:  # upstream, the Flink operator's chart installed its CRDs
            for name in FLINK_CRDS:
                cluster.kubectl("apply", "--server-side", "-f", str(crds_dir / name))
        kube.apply(cluster, *run.pipeline_namespace)  # the toolbox may run there
        infra_.start(cluster, infra, tests_images, run.workers_image)
        run.posts = known_posts()
        yield run
    finally:
        run.save()
        teardown(run)


def teardown(run: Stage) -> None:
    """Leave nothing behind: the driver stops, finalizers it set go, namespaces and the Helm
    release are removed, and a cluster this run started is taken down (never the workflow's
    kind cluster)."""
    run.driver.stop()
    cluster = run.cluster
    if isinstance(run.driver, FlinkDriver):
        no_finalizers = '{"metadata":{"finalizers":[]}}'
        for obj in kube.items(cluster, "flinkdeployment", "-n", run.spec.namespace):
            name = obj["metadata"]["name"]
            cluster.kubectl("patch", "flinkdeployment", name, "-n", run.spec.namespace,
                            "--type=merge", "-p", no_finalizers, check=False)  # fmt: skip
    if run.started_cluster:
        run.say("removing the cluster this run started")
        cluster.down(run.say)
        return
    for namespace in (run.spec.namespace, run.infra.namespace):
        cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false",
                        check=False)  # fmt: skip
    helm = str(helm_binary())
    run_capture([helm, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE,
                 f"--kubeconfig={cluster.kubeconfig}"], check=False)  # fmt: skip
