"""What the local image builds take from the host, fetched and cached once per set of inputs.

No ``RUN`` step of a build reaches a network here, so everything a Dockerfile would download is
prepared on the host and staged into the build context under a ``stage-*`` name:

- wheelhouses (``stage-wheels/``): ``pip wheel`` of a package's requirements, run by a host
  interpreter of exactly the images' Python version (Debian 12's ``python3.11``, 3.11.2, on a
  Debian 12 host): environment markers such as ``python_full_version < "3.11.3"`` then select
  what the images' pip selects, and sdists become wheels of the images' platform;
- the Flink connector jars (``stage-flink-jars/``): the ``flink-jars-<hash>`` cache of
  ``flink/environment.py`` (``make flink-env``), fetched by it when missing;
- the Jetstream zstd dictionary (``stage-jetstream/``): ``$STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY``,
  checked against the checksum pinned in ``workers/Dockerfile``;
- the baked models (``stage-models/``): tiny BERT models exported by
  ``tests/harness/tiny_models.py`` through ``streampulse models export``'s code;
- Flink's distribution for the local Flink base (``flinkbase.py``): ``bin``, ``conf``, ``lib``,
  ``opt`` and ``plugins`` out of the ``apache-flink`` and ``apache-flink-libraries`` wheels, plus
  the S3 filesystem plugin from Maven Central.

Each downloaded piece lives in ``<cache>/images-stage-<piece>-<hash>/``, the hash taken over its
inputs (requirement pins, coordinates, this module's recipe version), finished by a
``.complete`` stamp: a second build, or a build from a fresh clone, reuses it as it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    cache_root,
    locked,
    recipe_hash,
    run_step,
)

STAGE_RECIPE = "1"
"""Part of every staged piece's hash: bump it when how pieces are made changes."""

PIP_HOME = "images-stage-pip"
"""``<cache>/images-stage-pip-<version>/``: a venv of the host interpreter that makes wheels."""

WHEELHOUSES = ("operator", "workers", "flink")

DICTIONARY_ENV = "STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY"
DICTIONARY_NAME = "zstd_dictionary_v1.bin"
MODEL_NAMES = ("toxicity", "ner", "sentiment")

S3_PLUGIN = ("org.apache.flink", "flink-s3-fs-hadoop", "2.1.1")
"""Flink's S3 filesystem plugin for the local Flink base (official images ship it in ``opt/``).

The Maven Central reachable here has no 2.1.2 or 2.1.3 of it; 2.1.1 is the same release line, a
plugin loaded in its own class loader against Flink's stable ``FileSystem`` interface."""

FLINK_DIST_DIRS = ("bin", "conf", "lib", "opt", "plugins", "licenses")
"""What of the wheels' ``pyflink/`` tree makes ``/opt/flink`` (an empty ``log/`` is added)."""


def _pyproject(path: Path) -> dict[str, object]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _project_requirements(repo: Path, package: str, extras: tuple[str, ...]) -> list[str]:
    data = _pyproject(repo / package / "pyproject.toml")
    project = data.get("project")
    build = data.get("build-system")
    if not isinstance(project, dict) or not isinstance(build, dict):
        raise ClusterError(f"{package}/pyproject.toml has no [project] or [build-system]")
    optional = project.get("optional-dependencies") or {}
    requirements = _strings(project.get("dependencies"))
    for extra in extras:
        requirements += _strings(optional.get(extra) if isinstance(optional, dict) else None)
    return requirements + _strings(build.get("requires"))


def requirements(repo: Path, wheelhouse: str) -> list[str]:
    """What a wheelhouse holds: the requirements its Dockerfiles install, and what their
    package builds need (the ``build-system`` requirements, resolved offline by pip's build
    isolation through ``PIP_FIND_LINKS``)."""
    if wheelhouse == "operator":
        return _project_requirements(repo, "operator", ())
    if wheelhouse == "workers":  # the workers image and the model server (serving extra)
        return _project_requirements(repo, "workers", ("serving",))
    if wheelhouse == "flink":
        lines = (repo / "flink" / "requirements.txt").read_text().splitlines()
        pinned = [line.split("#")[0].strip() for line in lines]
        build_system = _pyproject(repo / "flink" / "pyproject.toml").get("build-system")
        build = _strings(build_system.get("requires") if isinstance(build_system, dict) else None)
        if not build:
            raise ClusterError("flink/pyproject.toml has no [build-system] requires")
        # the Dockerfile upgrades the venv's pip before installing anything
        return [line for line in pinned if line] + build + ["pip"]
    raise ClusterError(f"unknown wheelhouse {wheelhouse!r}; known: {', '.join(WHEELHOUSES)}")


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    """The default of ``ARG <name>=...`` in a Dockerfile (the single place a pin is written)."""
    match = re.search(rf"^ARG {re.escape(name)}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise ClusterError(f"{dockerfile} has no `ARG {name}=...`")
    return match.group(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_flink_environment(repo: Path) -> ModuleType:
    """``flink/environment.py`` of the checkout, imported by path (it is standard library only)."""
    name = "streampulse_flink_environment"
    spec = importlib.util.spec_from_file_location(name, repo / "flink" / "environment.py")
    if spec is None or spec.loader is None:
        raise ClusterError(f"cannot import {repo / 'flink' / 'environment.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@dataclass
class Stager:
    """Prepares (or finds cached) every staged piece; each is made at most once per instance."""

    repo: Path
    cache_dir: Path | None = None
    say: Progress = field(default_factory=Progress)
    timings: dict[str, float] = field(default_factory=dict)
    _made: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return cache_root(self.cache_dir)

    def _once(self, key: str, make: Callable[[], Path]) -> Path:
        if key not in self._made:
            started = time.monotonic()
            self._made[key] = make()
            self.timings[key] = time.monotonic() - started
        return self._made[key]

    # -- wheelhouses ---------------------------------------------------------------------------

    def wheelhouse(self, name: str, python_version: str) -> Path:
        """The directory of wheels for ``name`` (``operator``, ``workers`` or ``flink``) for an
        image whose Python is ``python_version`` (e.g. ``3.11.2``)."""
        key = f"wheels-{name}-{python_version}"
        return self._once(key, lambda: self._wheelhouse(name, python_version))

    def _pip(self, python_version: str) -> Path:
        """A venv's python of a host interpreter that is exactly ``python_version``, with a
        current pip (``ensurepip``'s 23.0 in Debian 12 builds an sdist without ``pyproject.toml``
        with ``setup.py bdist_wheel``, which fails without the ``wheel`` package; later pips build
        every sdist in an isolated PEP 517 environment)."""
        home = self.root / f"{PIP_HOME}-{python_version}"
        python = home / "bin" / "python"
        if (home / ".complete").is_file():
            return python
        interpreters = (sys.executable, "/usr/bin/python3.11", shutil.which("python3.11"))
        candidates = [c for c in interpreters if c and Path(c).is_file()]
        found = [c for c in dict.fromkeys(candidates) if _version_of(c) == python_version]
        if not found:
            raise ClusterError(
                f"no Python {python_version} on this host to resolve wheelhouses for the images' "
                f"Python {python_version} (tried {', '.join(candidates)}); on Debian 12 install "
                "python3.11-venv"
            )
        log = self.root / f"{PIP_HOME}-{python_version}.log"
        with locked(self.root / f"{PIP_HOME}-{python_version}.lock"):
            if (home / ".complete").is_file():
                return python
            shutil.rmtree(home, ignore_errors=True)
            with self.say.step(f"pip for the wheelhouses: a venv of {found[0]}"):
                run_step([found[0], "-m", "venv", str(home)], log=log, say=self.say, label="venv")
                run_step(
                    [str(python), "-m", "pip", "install", "--upgrade", "pip"]
                    + ["--disable-pip-version-check", "--progress-bar", "off"],
                    log=log,
                    say=self.say,
                    label="pip install --upgrade pip",
                )
            (home / ".complete").write_text(f"{found[0]}\n")
        return python

    def _wheelhouse(self, name: str, python_version: str) -> Path:
        wanted = requirements(self.repo, name)
        digest = recipe_hash(
            STAGE_RECIPE, "wheels", name, wanted, f"cp{python_version}", platform.machine()
        )
        home = self.root / f"images-stage-wheels-{name}-{digest}"
        wheels = home / "wheels"
        if (home / ".complete").is_file():
            return wheels
        home.mkdir(parents=True, exist_ok=True)
        with locked(home / ".lock"):
            if (home / ".complete").is_file():
                return wheels
            partial = home / "wheels.partial"
            shutil.rmtree(partial, ignore_errors=True)
            with self.say.step(f"wheelhouse {name}: pip wheel of {len(wanted)} requirements"):
                run_step(
                    [str(self._pip(python_version)), "-m", "pip", "wheel", "--progress-bar", "off"]
                    + ["--disable-pip-version-check", "--wheel-dir", str(partial), *wanted],
                    log=home / "pip.log",
                    say=self.say,
                    label=f"pip wheel ({name})",
                    timeout_s=3600,
                )
            shutil.rmtree(wheels, ignore_errors=True)
            partial.replace(wheels)
            found = sorted(p.name for p in wheels.glob("*.whl"))
            (home / "requirements.json").write_text(json.dumps(wanted, indent=2) + "\n")
            (home / ".complete").write_text("\n".join(found) + "\n")
            self.say(f"wheelhouse {name}: {len(found)} wheels in {wheels}")
        return wheels

    # -- Flink ---------------------------------------------------------------------------------

    def flink_jars(self) -> Path:
        """The connector jars ``make flink-env`` fetches (``flink-jars-<hash>/lib``)."""
        return self._once("flink-jars", self._flink_jars)

    def _flink_jars(self) -> Path:
        environment = load_flink_environment(self.repo)
        with self.say.step("Flink connector jars (flink/environment.py, Maven Central)"):
            try:
                return Path(environment.ensure_jars(self.root))
            except environment.FlinkEnvironmentError as exc:
                raise ClusterError(str(exc)) from exc

    def flink_version(self) -> str:
        """The Flink release ``flink/environment.py`` pins (the connectors' and the image's)."""
        return str(load_flink_environment(self.repo).FLINK_VERSION)

    def flink_dist(self, python_version: str) -> Path:
        """``/opt/flink`` of the local Flink base, out of the PyFlink wheels and Maven Central."""
        return self._once("flink-dist", lambda: self._flink_dist(python_version))

    def _flink_dist(self, python_version: str) -> Path:
        version = self.flink_version()
        wheels = self.wheelhouse("flink", python_version)
        sources = [
            self._one(wheels, f"apache_flink-{version}-cp311-*.whl"),
            self._one(wheels, f"apache_flink_libraries-{version}-*.whl"),
        ]
        digest = recipe_hash(
            STAGE_RECIPE, "flink-dist", [p.name for p in sources], S3_PLUGIN, FLINK_DIST_DIRS
        )
        home = self.root / f"images-stage-flink-dist-{digest}"
        dist = home / "dist"
        if (home / ".complete").is_file():
            return dist
        home.mkdir(parents=True, exist_ok=True)
        with locked(home / ".lock"):
            if (home / ".complete").is_file():
                return dist
            partial = home / "dist.partial"
            shutil.rmtree(partial, ignore_errors=True)
            names = ", ".join(p.name for p in sources)
            with self.say.step(f"Flink {version} distribution from {names}"):
                for wheel in sources:
                    _extract_pyflink(wheel, partial)
                (partial / "log").mkdir(exist_ok=True)
                for script in (partial / "bin").iterdir():
                    script.chmod(0o755)
            group, artifact, s3_version = S3_PLUGIN
            with self.say.step(f"{artifact} {s3_version} from Maven Central"):
                run_step(
                    ["mvn", "-q", "-B", "dependency:copy"]
                    + [f"-Dartifact={group}:{artifact}:{s3_version}:jar"]
                    + [f"-DoutputDirectory={partial / 'opt'}"],
                    log=home / "mvn.log",
                    say=self.say,
                    label=f"mvn dependency:copy {artifact}",
                    timeout_s=1800,
                )
            needed_files = (
                "bin/kubernetes-jobmanager.sh",
                "bin/flink",
                f"lib/flink-dist-{version}.jar",
            )
            for needed in needed_files:
                if not (partial / needed).is_file():
                    raise ClusterError(f"the PyFlink wheels have no {needed}")
            shutil.rmtree(dist, ignore_errors=True)
            partial.replace(dist)
            (home / ".complete").write_text(f"{version}\n")
        return dist

    @staticmethod
    def _one(directory: Path, pattern: str) -> Path:
        found = sorted(directory.glob(pattern))
        if len(found) != 1:
            raise ClusterError(f"expected one {pattern} in {directory}, found {len(found)}")
        return found[0]

    # -- workers' inputs -----------------------------------------------------------------------

    def dictionary(self) -> Path:
        """The Jetstream zstd dictionary, checked against ``workers/Dockerfile``'s pin."""
        return self._once("jetstream-dictionary", self._dictionary)

    def _dictionary(self) -> Path:
        configured = os.environ.get(DICTIONARY_ENV)
        path = (
            Path(configured)
            if configured
            else self.repo.parent / "shared" / "data" / "jetstream" / DICTIONARY_NAME
        )
        if not path.is_file():
            raise ClusterError(f"no Jetstream zstd dictionary at {path}: set ${DICTIONARY_ENV}")
        pinned = dockerfile_arg(self.repo / "workers" / "Dockerfile", "ZSTD_DICTIONARY_SHA256")
        if (actual := sha256_of(path)) != pinned:
            raise ClusterError(f"{path} has sha256 {actual}; workers/Dockerfile pins {pinned}")
        return path

    def models(self) -> Path:
        """The directory of tiny exported models (``toxicity``, ``ner``, ``sentiment``, ...)."""
        return self._once("models", self._models)

    def _models(self) -> Path:
        code = (
            "import sys\nfrom pathlib import Path\n"
            "from tests.harness.tiny_models import build_tiny_models\n"
            "print(build_tiny_models(Path(sys.argv[1])).root)\n"
        )
        log = self.root / "images-stage-models.log"
        log.unlink(missing_ok=True)
        with self.say.step("tiny models (tests/harness/tiny_models.py: train, export to ONNX)"):
            run_step(
                [sys.executable, "-c", code, str(self.root)],
                log=log,
                say=self.say,
                label="tiny models",
                cwd=self.repo,
                timeout_s=1800,
            )
        root = Path(log.read_text().strip().splitlines()[-1])
        for name in MODEL_NAMES:
            if not (root / name / "manifest.json").is_file():
                raise ClusterError(f"the tiny models in {root} have no {name}/manifest.json")
        return root


def _version_of(python: str) -> str:
    proc = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip()


def _extract_pyflink(wheel: Path, target: Path) -> None:
    """``pyflink/<dir>/...`` of a wheel into ``target/<dir>/...``, modes kept."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if len(parts) < 3 or parts[0] != "pyflink" or parts[1] not in FLINK_DIST_DIRS:
                continue
            if info.is_dir():
                continue
            out = target.joinpath(*parts[1:])
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, out.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            out.chmod(mode | 0o644 if mode else 0o644)
