"""``build_images``: the project's images built from the checkout, offline, with local bases.

Each image is built from a temporary context (``contexts.build_context``: the checkout's sources
as ``.dockerignore`` allows, plus its staged inputs), with ``--network none`` (no ``RUN`` step may
need a network) and the build arguments that swap the upstream bases and downloads for the local
ones. The images are tagged as the chart and the StreamPulse spec expect them, so a cluster that
loads them runs them as a user's cluster would run the published ones.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.harness.cluster.bases import BASES, ensure_base
from tests.harness.cluster.common import ClusterError, Progress, cache_root, run_capture, run_step
from tests.harness.cluster.engine import Engine, ensure_engine
from tests.harness.images.contexts import build_context
from tests.harness.images.flinkbase import ensure_flink_base
from tests.harness.images.recipes import IMAGES, ImageRecipe
from tests.harness.images.running import python_version_of
from tests.harness.images.staging import DICTIONARY_NAME, MODEL_NAMES, Stager, dockerfile_arg
from tests.harness.images.trino_stage import stage_trino

REPO = Path(__file__).resolve().parents[3]

Builder = Literal["classic", "buildkit"]
BUILDERS: tuple[Builder, ...] = ("classic", "buildkit")
Bases = Literal["local", "registry"]
"""``local``: the bases made here from Debian packages (build arguments); ``registry``: the
Dockerfiles' own ``FROM`` defaults, pulled from their registries (the GitHub workflow)."""
WHEELS_IN_IMAGE = "/wheels"
"""Where the Dockerfiles copy ``stage-wheels/`` (``PIP_FIND_LINKS``)."""


@dataclass(frozen=True)
class ImageResult:
    """One built image."""

    name: str
    tag: str
    image_id: str
    seconds: float
    """Wall time of its ``docker build`` (staging and bases not included)."""
    size_bytes: int
    rebuilt: bool
    """False when the build produced the image the tag already named (every layer cached)."""


def image_names(only: Iterable[str] | None) -> list[str]:
    names = list(only) if only else list(IMAGES)
    unknown = [name for name in names if name not in IMAGES]
    if unknown:
        raise ClusterError(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    return names


def _base_args(
    recipe: ImageRecipe, stager: Stager, engine: Engine, cache_dir: Path | None, say: Progress
) -> tuple[dict[str, str], str]:
    """The local bases as build arguments, and the image the wheels install into."""
    if recipe.name == "trino":  # Java 25 only: no Python, no wheels
        java = ensure_base(engine, BASES["java25"], cache_dir, say)
        return {"JAVA_IMAGE": java}, java
    python = ensure_base(engine, BASES["python"], cache_dir, say)
    args = {"PYTHON_IMAGE": python}
    if recipe.name != "flink":
        return args, python
    args["FLINK_IMAGE"] = ensure_flink_base(engine, stager, cache_dir, say)
    args["MAVEN_IMAGE"] = ensure_base(engine, BASES["debian"], cache_dir, say)
    return args, args["FLINK_IMAGE"]


def _inputs(
    recipe: ImageRecipe,
    stager: Stager,
    engine: Engine,
    cache_dir: Path | None,
    say: Progress,
    bases: Bases = "local",
) -> tuple[dict[str, Path], dict[str, str]]:
    """What one image's context stages, and its build arguments. With the registry bases pip
    installs from PyPI (no wheelhouse, network on); the dictionary, the tiny models and the
    connector jars are staged either way."""
    staged: dict[str, Path] = {}
    args: dict[str, str] = {}
    if bases == "local":
        base_args, installs_into = _base_args(recipe, stager, engine, cache_dir, say)
        args = base_args
        if recipe.wheelhouse:
            args |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS_IN_IMAGE}
            # the wheels are resolved for the Python of the image that installs them
            python_version = python_version_of(engine, installs_into)
            staged["stage-wheels"] = stager.wheelhouse(recipe.wheelhouse, python_version)
    if recipe.name == "workers":
        staged[f"stage-jetstream/{DICTIONARY_NAME}"] = stager.dictionary()
    elif recipe.name == "models":
        models = stager.models()
        for model in MODEL_NAMES:
            staged[f"stage-models/{model}"] = models / model
    elif recipe.name == "flink":
        pinned = dockerfile_arg(stager.repo / recipe.dockerfile, "FLINK_VERSION")
        if pinned != (version := stager.flink_version()):
            raise ClusterError(
                f"flink/Dockerfile builds Flink {pinned}, flink/environment.py pins {version}"
            )
        staged["stage-flink-jars"] = stager.flink_jars()
    elif recipe.name == "trino":
        staged |= stage_trino(stager.repo / recipe.dockerfile, cache_dir, say)
    return staged, args


def _buildkit_cli(engine: Engine) -> str:
    """A client that runs BuildKit builds by itself: 20.10 to 22.x (23+ need the buildx plugin)."""
    for cli in (engine.cli, "/usr/bin/docker"):
        if not shutil.which(cli):
            continue
        proc = run_capture([cli, "version", "--format", "{{.Client.Version}}"], check=False)
        major = proc.stdout.strip().split(".")[0]
        if major.isdigit() and 20 <= int(major) < 23:
            return cli
    raise ClusterError(
        "BuildKit builds need a docker client 20.10-22.x (Debian's docker.io has /usr/bin/docker) "
        "or the buildx plugin; use the classic builder"
    )


def _image(engine: Engine, tag: str) -> tuple[str, int] | None:
    proc = engine.docker("image", "inspect", tag, check=False)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout)[0]
    return str(found["Id"]), int(found["Size"])


def build_image(
    recipe: ImageRecipe,
    *,
    engine: Engine,
    stager: Stager,
    cache_dir: Path | None = None,
    builder: Builder = "classic",
    no_cache: bool = False,
    bases: Bases = "local",
    say: Progress | None = None,
) -> ImageResult:
    """Build one image from the stager's checkout; raises :class:`ClusterError` on failure.

    ``no_cache`` rebuilds every step (a cold build of the image; bases and staged inputs stay
    cached)."""
    say = say or Progress(prefix="images")
    staged, args = _inputs(recipe, stager, engine, cache_dir, say, bases)
    env = engine.env()
    cli = engine.cli
    # --force-rm: a failed step's container goes too
    argv_tail = ["--force-rm", "-t", recipe.tag]
    if bases == "local":  # everything is staged: no step reaches a network
        argv_tail[:0] = ["--network", "none"]
    if no_cache:
        argv_tail.append("--no-cache")
    if builder == "buildkit":
        cli = _buildkit_cli(engine)
        env["DOCKER_BUILDKIT"] = "1"
        argv_tail += ["--progress", "plain"]
    for key, value in args.items():
        argv_tail += ["--build-arg", f"{key}={value}"]
    logs = cache_root(cache_dir) / "images-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{recipe.name}.log"
    log.unlink(missing_ok=True)
    before = _image(engine, recipe.tag)
    with build_context(stager.repo, staged) as context:
        say(f"{recipe.name}: docker build -f {recipe.dockerfile} ({builder} builder; log {log})")
        started = time.monotonic()
        run_step(
            [cli, "build", "-f", str(context / recipe.dockerfile), *argv_tail, str(context)],
            log=log,
            say=say,
            label=f"docker build {recipe.name}",
            env=env,
            timeout_s=3600,
        )
        seconds = time.monotonic() - started
    after = _image(engine, recipe.tag)
    if after is None:
        raise ClusterError(f"{recipe.tag} is missing after its build; see {log}")
    image_id, size = after
    rebuilt = before is None or before[0] != image_id
    if before is not None and rebuilt:  # the image this one replaces: its own layers go
        engine.docker("image", "rm", before[0], check=False)
    say(
        f"{recipe.name}: {recipe.tag} {'built' if rebuilt else 'unchanged'} in {seconds:.1f}s, "
        f"{size / 1e6:.0f} MB"
    )
    return ImageResult(recipe.name, recipe.tag, image_id, seconds, size, rebuilt)


def build_images(
    cache_dir: Path | None = None,
    only: Iterable[str] | None = None,
    *,
    repo: Path = REPO,
    builder: Builder = "classic",
    no_cache: bool = False,
    bases: Bases = "local",
    say: Progress | None = None,
) -> dict[str, ImageResult]:
    """Build the project's images (all, or those named in ``only``) from the checkout at ``repo``
    with the local bases (or the Dockerfiles' registry ones) and staged inputs, one after the
    other; the results by image name."""
    say = say or Progress(prefix="images")
    names = image_names(only)
    engine = ensure_engine(cache_dir, say)
    stager = Stager(repo=repo, cache_dir=cache_dir, say=say)
    results: dict[str, ImageResult] = {}
    for name in names:
        recipe = IMAGES[name]
        results[name] = build_image(
            recipe,
            engine=engine,
            stager=stager,
            cache_dir=cache_dir,
            builder=builder,
            no_cache=no_cache,
            bases=bases,
            say=say,
        )
    return results
