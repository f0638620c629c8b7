"""Base images made here from Debian packages: ``debootstrap`` a root filesystem, ``docker import``.

No registry is reachable, so the ``FROM`` images of the project's Dockerfiles (and of the node and
its component images) are made locally. Each base is a recipe: a Debian suite, the packages to
include, and a fix-up function applied to the root filesystem on the host. A hash of the recipe
(including the fix-up's source) names its cache directory ``images-<name>-<hash>/`` (the root
filesystem as ``rootfs.tar``) and labels the image (``streampulse.recipe``); the image is
rebuilt only when that hash changes, and re-imported from ``rootfs.tar`` when the engine's data
was wiped.

The Dockerfiles keep their upstream ``FROM`` for users and CI; a local build substitutes the
local base through a build argument, e.g. ``--build-arg BASE_IMAGE=$(local_base(...))``.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    apt_install,
    cache_root,
    locked,
    recipe_hash,
    run_step,
)
from tests.harness.cluster.engine import Engine

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"  # Debian 12: Python 3.11, OpenJDK 17, systemd 252
RECIPE_LABEL = "streampulse.recipe"
UPSTREAM_LABEL = "streampulse.upstream"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Documentation, manuals and translations are not needed in any image built here.
PRUNED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
)


@dataclass(frozen=True)
class BaseRecipe:
    """One base image: what ``debootstrap`` installs and what is adjusted afterwards."""

    name: str
    tag: str
    include: tuple[str, ...] = ()
    fixup: Callable[[Path], None] | None = None
    changes: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    suite: str = SUITE
    variant: str = "minbase"

    def digest(self) -> str:
        fixup_source = inspect.getsource(self.fixup) if self.fixup else ""
        return recipe_hash(
            self.name,
            self.tag,
            self.suite,
            self.variant,
            MIRROR,
            sorted(self.include),
            list(self.changes),
            fixup_source,
            inspect.getsource(_prune),
            PRUNED,
        )


def _prune(root: Path) -> None:
    for rel in PRUNED:
        target = root / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for cache in (root / "var/cache/apt").glob("*.bin"):
        cache.unlink()
    # the host's resolver and hostname stay out of images
    (root / "etc/hostname").write_text("localhost\n")
    resolv = root / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    resolv.write_text("")


def _python_fixup(root: Path) -> None:
    """Make Debian's Python 3.11 stand in for ``python:3.11-slim``.

    - ``python``, ``python3``, ``pip``, ``pip3`` in ``/usr/local/bin`` as in the slim image;
    - no ``EXTERNALLY-MANAGED`` marker, so ``pip install`` works as in the slim image;
    - ``/usr/local/lib/python3.11/site-packages`` (where ``pip install --prefix=/install`` then
      ``COPY /install /usr/local`` puts packages) is a site directory, ahead of Debian's own
      ``dist-packages``, through a ``.pth`` file.
    """
    (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    # Debian's sysconfig maps every prefix install to its posix_local scheme, so
    # `pip install --prefix=/install` would write /install/local/lib/python3.11/dist-packages.
    # An install into another prefix gets the plain posix_prefix layout instead, as upstream.
    sysconfig = root / "usr/lib/python3.11/sysconfig.py"
    sysconfig.write_text(
        sysconfig.read_text() + "\n\n"
        "# streampulse base image: an install into another prefix (pip install --prefix=DIR)\n"
        "# uses posix_prefix, DIR/lib/python3.11/site-packages and DIR/bin, as python:3.11-slim.\n"
        "_debian_get_paths = get_paths\n\n\n"
        "def get_paths(scheme=get_default_scheme(), vars=None, expand=True):\n"
        "    base = (vars or {}).get('base')\n"
        "    if scheme == 'posix_local' and base not in (None, sys.prefix, sys.base_prefix):\n"
        "        scheme = 'posix_prefix'\n"
        "    return _debian_get_paths(scheme, vars, expand)\n"
    )
    local_bin = root / "usr/local/bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        link = local_bin / name
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3")
    for name in ("pip", "pip3", "pip3.11"):
        script = local_bin / name
        script.write_text('#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n')
        script.chmod(0o755)
    (root / "usr/local/lib/python3.11/site-packages").mkdir(parents=True, exist_ok=True)
    module = root / "usr/lib/python3/dist-packages/streampulse_local_site.py"
    module.write_text(
        '"""/usr/local/lib/python3.11/site-packages on sys.path, as in python:3.11-slim."""\n'
        "import site\n"
        "import sys\n\n"
        'LOCAL = "/usr/local/lib/python3.11/site-packages"\n'
        "before = list(sys.path)\n"
        "site.addsitedir(LOCAL)\n"
        "added = [p for p in sys.path if p not in before]\n"
        "rest = [p for p in sys.path if p in before]\n"
        "at = next((i for i, p in enumerate(rest) if p.endswith('-packages')), len(rest))\n"
        "sys.path[:] = rest[:at] + added + rest[at:]\n"
    )
    (root / "usr/lib/python3/dist-packages/streampulse_local_site.pth").write_text(
        "import streampulse_local_site\n"
    )


def _node_fixup(root: Path) -> None:
    """systemd as PID 1 in a container: no units that touch the host or wait for hardware."""
    for pattern in (
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
        "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
    ):
        for path in root.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()
    journald = root / "etc/systemd/journald.conf"
    journald.write_text(journald.read_text() + "\nReadKMsg=no\n")
    init = root / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/lib/systemd/systemd")


BASES: dict[str, BaseRecipe] = {
    recipe.name: recipe
    for recipe in (
        BaseRecipe(
            name="debian",
            tag="streampulse-base/debian:12",
            include=("ca-certificates", "netbase"),
            changes=(f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["bash"]'),
            upstream=("debian:12-slim", "debian:bookworm-slim", "debian:12", "debian:bookworm"),
        ),
        BaseRecipe(
            name="python",
            tag="streampulse-base/python:3.11",
            include=(
                "ca-certificates",
                "netbase",
                "tzdata",
                "python3",
                "python3-pip",
                "python3-venv",
            ),
            fixup=_python_fixup,
            changes=(
                f"ENV {PATH_ENV}",
                "ENV LANG=C.UTF-8",
                "ENV PYTHON_VERSION=3.11",
                'CMD ["python3"]',
            ),
            upstream=("python:3.11-slim", "python:3.11-slim-bookworm", "python:3.11"),
        ),
        BaseRecipe(
            name="java",
            tag="streampulse-base/java:17",
            include=("ca-certificates", "netbase", "openjdk-17-jre-headless"),
            changes=(
                f"ENV {PATH_ENV}",
                "ENV LANG=C.UTF-8",
                "ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64",
                'CMD ["bash"]',
            ),
            upstream=("eclipse-temurin:17-jre", "eclipse-temurin:17", "openjdk:17-slim"),
        ),
        BaseRecipe(
            name="java25",
            tag="streampulse-base/java:25",
            # Debian 13: OpenJDK 25, the Java Trino 476 needs (Debian 12 has 17 only)
            suite="trixie",
            include=("ca-certificates", "netbase", "openjdk-25-jre-headless"),
            changes=(
                f"ENV {PATH_ENV}",
                "ENV LANG=C.UTF-8",
                "ENV JAVA_HOME=/usr/lib/jvm/java-25-openjdk-amd64",
                'CMD ["bash"]',
            ),
            upstream=("eclipse-temurin:25-jre", "eclipse-temurin:25"),
        ),
        BaseRecipe(
            name="net",
            tag="streampulse-base/net:12",
            include=("ca-certificates", "iptables", "ipset", "conntrack", "iproute2", "kmod"),
            changes=(f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["bash"]'),
        ),
        BaseRecipe(
            name="node",
            tag="streampulse-base/node:12",
            include=(
                "systemd",
                "ca-certificates",
                "conntrack",
                "iptables",
                "ipset",
                "nftables",
                "iproute2",
                "ethtool",
                "socat",
                "util-linux",
                "mount",
                "kmod",
                "libseccomp2",
                "procps",
                "jq",
                "bash",
            ),
            fixup=_node_fixup,
            changes=(f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", "ENV container=docker"),
        ),
    )
}


def local_base(upstream: str) -> str:
    """The local tag standing in for an upstream base image, e.g.
    ``python:3.11-slim`` -> ``streampulse-base/python:3.11``."""
    for recipe in BASES.values():
        if upstream in recipe.upstream or upstream == recipe.tag:
            return recipe.tag
    known = sorted(u for r in BASES.values() for u in r.upstream)
    raise KeyError(f"no local base for {upstream!r}; known upstream bases: {', '.join(known)}")


def base_dir(cache_dir: Path | None, recipe: BaseRecipe) -> Path:
    return cache_root(cache_dir) / f"images-{recipe.name}-{recipe.digest()}"


def ensure_base(
    engine: Engine, recipe: BaseRecipe, cache_dir: Path | None = None, say: Progress | None = None
) -> str:
    """Build (or re-import) one base image unless the engine has it at this recipe; its tag."""
    say = say or Progress()
    digest = recipe.digest()
    if engine.image_label(recipe.tag, RECIPE_LABEL) == digest:
        return recipe.tag
    home = base_dir(cache_dir, recipe)
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if engine.image_label(recipe.tag, RECIPE_LABEL) == digest:
            return recipe.tag
        tarball = home / "rootfs.tar"
        if not tarball.is_file():
            with say.step(f"base image {recipe.tag}: debootstrap {recipe.suite} (recipe {digest})"):
                _bootstrap(recipe, home, cache_root(cache_dir), say)
        with say.step(f"base image {recipe.tag}: docker import"):
            changes = [
                *recipe.changes,
                f"LABEL {RECIPE_LABEL}={digest}",
                f"LABEL {UPSTREAM_LABEL}={','.join(recipe.upstream) or '-'}",
            ]
            argv = [engine.cli, "import"]
            for change in changes:
                argv += ["--change", change]
            argv += [str(tarball), recipe.tag]
            run_step(argv, log=home / "build.log", say=say, label="docker import", env=engine.env())
    return recipe.tag


def _bootstrap(recipe: BaseRecipe, home: Path, root_cache: Path, say: Progress) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).is_file():
        apt_install(("debootstrap",), home / "build.log", say)
    rootfs = home / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    debs = root_cache / "images-debs"
    debs.mkdir(parents=True, exist_ok=True)
    log = home / "build.log"
    argv = [debootstrap, f"--variant={recipe.variant}", f"--cache-dir={debs}"]
    if recipe.include:
        argv.append(f"--include={','.join(recipe.include)}")
    argv += [recipe.suite, str(rootfs), MIRROR]
    run_step(argv, log=log, say=say, label=f"debootstrap {recipe.name}", timeout_s=1800)
    (rootfs / "etc/apt/sources.list").write_text(f"deb {MIRROR} {recipe.suite} main\n")
    if recipe.fixup:
        recipe.fixup(rootfs)
    _prune(rootfs)
    partial = home / "rootfs.tar.partial"
    run_step(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
        log=log,
        say=say,
        label="tar rootfs",
    )
    partial.replace(home / "rootfs.tar")
    shutil.rmtree(rootfs)


def ensure_bases(
    engine: Engine,
    names: tuple[str, ...] = ("debian", "python", "java"),
    cache_dir: Path | None = None,
    say: Progress | None = None,
) -> dict[str, str]:
    """Ensure several base images; their tags by recipe name."""
    return {name: ensure_base(engine, BASES[name], cache_dir, say) for name in names}


def check_build_offline(engine: Engine, workdir: Path, say: Progress | None = None) -> str:
    """``docker build`` a trivial Dockerfile on the Debian base whose RUN step has no network.

    Returns what the built image prints; raises if the build or the image fails.
    """
    say = say or Progress()
    base = BASES["debian"].tag
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Dockerfile").write_text(
        f"ARG BASE_IMAGE={base}\n"
        "FROM ${BASE_IMAGE}\n"
        "COPY hello.txt /hello.txt\n"
        "RUN set -e; test -s /hello.txt; echo built-offline >> /hello.txt\n"
        'CMD ["cat", "/hello.txt"]\n'
    )
    (workdir / "hello.txt").write_text("hello from a local build\n")
    tag = "streampulse-check/offline-build:1"
    run_step(
        [engine.cli, "build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(workdir)],
        log=workdir / "build.log",
        say=say,
        label="docker build (offline check)",
        env=engine.env(),
    )
    out = subprocess.run(
        [engine.cli, "run", "--rm", "--network", "none", tag],
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    engine.docker("image", "rm", tag, check=False)
    if out.returncode != 0:
        raise ClusterError(f"the offline build's image failed to run: {out.stderr}")
    return out.stdout
