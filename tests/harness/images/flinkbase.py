"""The local Flink base: what ``flink:<version>-scala_2.12-java17`` is to ``flink/Dockerfile``.

The official Flink images are on Docker Hub, which is not reachable here. The stand-in is made
from parts that are:

- its OS image, ``streampulse-base/flink-os:12``: the cluster harness's Java 17 base recipe
  (Debian 12, OpenJDK 17 JRE headless) with Python 3.11 and ``venv`` added, bootstrapped by
  ``tests/harness/cluster/bases.py`` (so ``flink/Dockerfile`` skips its Python install);
- Flink's distribution from the PyFlink wheels (``staging.Stager.flink_dist``) in ``/opt/flink``,
  owned by the ``flink`` user (uid and gid 9999, as in the official image);
- ``/docker-entrypoint.sh`` (``flink_base/docker-entrypoint.sh``), the entry point Flink's native
  Kubernetes mode starts its containers through.

The image is labelled with a hash of all of that (``streampulse.recipe``) and rebuilt only when
the hash changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.harness.cluster.bases import BASES, RECIPE_LABEL, BaseRecipe, ensure_base
from tests.harness.cluster.common import Progress, cache_root, locked, recipe_hash, run_step
from tests.harness.cluster.engine import Engine
from tests.harness.images.contexts import build_context
from tests.harness.images.running import python_version_of
from tests.harness.images.staging import Stager

HERE = Path(__file__).resolve().parent / "flink_base"

FLINK_OS = dataclasses.replace(
    BASES["java"],
    name="flink-os",
    tag="streampulse-base/flink-os:12",
    include=(*BASES["java"].include, "python3", "python3-venv"),
    upstream=(),
)
"""Debian 12 with OpenJDK 17 and Python 3.11: the Java base's recipe plus Python."""


def flink_base_tag(version: str) -> str:
    """The local tag standing in for ``flink:<version>-scala_2.12-java17``."""
    return f"streampulse-base/flink:{version}-scala_2.12-java17"


def _recipe(os_recipe: BaseRecipe, dist: Path) -> str:
    return recipe_hash(
        os_recipe.digest(),
        dist.parent.name,  # images-stage-flink-dist-<hash of its inputs>
        HERE / "Dockerfile",
        HERE / "docker-entrypoint.sh",
    )


def ensure_flink_base(
    engine: Engine, stager: Stager, cache_dir: Path | None = None, say: Progress | None = None
) -> str:
    """Build the local Flink base unless the engine has it at this recipe; its tag."""
    say = say or Progress()
    os_tag = ensure_base(engine, FLINK_OS, cache_dir, say)
    version = stager.flink_version()
    dist = stager.flink_dist(python_version_of(engine, os_tag))
    tag = flink_base_tag(version)
    digest = _recipe(FLINK_OS, dist)
    if engine.image_label(tag, RECIPE_LABEL) == digest:
        return tag
    home = cache_root(cache_dir) / "images-flink-base"
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if engine.image_label(tag, RECIPE_LABEL) == digest:
            return tag
        replaced = engine.docker("image", "inspect", "--format", "{{.Id}}", tag, check=False)
        staged = {
            "Dockerfile": HERE / "Dockerfile",
            "docker-entrypoint.sh": HERE / "docker-entrypoint.sh",
            "dist": dist,
        }
        with (
            say.step(f"Flink base {tag} (recipe {digest})"),
            build_context(stager.repo, staged, with_sources=False) as context,
        ):
            run_step(
                [engine.cli, "build", "--network", "none", "--build-arg", f"OS_IMAGE={os_tag}"]
                + ["--label", f"{RECIPE_LABEL}={digest}", "-t", tag, str(context)],
                log=home / "build.log",
                say=say,
                label=f"docker build {tag}",
                env=engine.env(),
                timeout_s=1800,
            )
        if replaced.returncode == 0:  # the base this one replaces: its own layers go
            engine.docker("image", "rm", replaced.stdout.strip(), check=False)
    return tag
