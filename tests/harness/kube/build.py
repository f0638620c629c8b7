"""Build the control-plane binaries from the Go module proxy into the cache, once.

Each component is built from a small generated wrapper module (``go.mod`` plus ``tool`` lines)
under ``<cache>/kube-<version>/src/<component>``. Kubernetes itself is required as
``k8s.io/kubernetes`` with every staging module it depends on replaced by the published
``k8s.io/<staging> v0.Y.Z`` of the same release, and linked with the version ldflags of the
upstream release build, so ``kube-apiserver --version`` and discovery report the real version.

A stamp file records the versions of a finished build; a second call is a no-op. Run
``python -m tests.harness.kube`` to build ahead of the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.kube import versions

BINARY_NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "helm",
)
BUILD_PARALLELISM = "2"
KWOK_STAGES_FILE = "kwok-stages.yaml"
# kwok's default stages (what kwokctl configures): node init + lease heartbeat, pod lifecycle.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


class BuildError(RuntimeError):
    """A Go build of a control-plane component failed; the message ends with the log tail."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the built control-plane executables."""

    bin_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    helm: Path

    @classmethod
    def in_dir(cls, bin_dir: Path) -> Binaries:
        paths = {name.replace("-", "_"): bin_dir / name for name in BINARY_NAMES}
        return cls(bin_dir=bin_dir, **paths)

    def all(self) -> dict[str, Path]:
        return {name: self.bin_dir / name for name in BINARY_NAMES}

    @property
    def kwok_stages(self) -> Path:
        """kwok's default Stage objects, passed to ``kwok --config``."""
        return self.bin_dir / KWOK_STAGES_FILE

    def missing(self) -> list[Path]:
        return [p for p in self.all().values() if not (p.is_file() and os.access(p, os.X_OK))]


@dataclass(frozen=True)
class _Wrapper:
    """One generated wrapper module and the commands built from it."""

    name: str
    requires: Mapping[str, str]
    commands: Mapping[str, str]  # binary name -> package path
    replaces: Mapping[str, str] = field(default_factory=dict)  # module -> published version
    ldflags: tuple[str, ...] = ()


def default_cache_dir() -> Path:
    env = os.environ.get("STREAMPULSE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "streampulse"


def kube_home(cache_dir: Path) -> Path:
    return cache_dir / f"kube-{versions.KUBERNETES.removeprefix('v')}"


def build_time_file(cache_dir: Path) -> Path:
    return kube_home(cache_dir) / "build-time.json"


def ensure_binaries(cache_dir: Path | None = None) -> Binaries:
    """Return the binaries, building every component first when the stamp is missing or stale."""
    home = kube_home(cache_dir or default_cache_dir())
    binaries = Binaries.in_dir(home / "bin")
    if _is_current(home, binaries) and binaries.kwok_stages.is_file():
        return binaries
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not _is_current(home, binaries):  # another process may have built it meanwhile
            _build_all(home, binaries)
        if not binaries.kwok_stages.is_file():
            log = home / "build.log"
            _write_kwok_stages(go_binary(), go_env(), log, binaries.kwok_stages)
    return binaries


def _is_current(home: Path, binaries: Binaries) -> bool:
    stamp = home / ".stamp"
    if not stamp.is_file() or binaries.missing():
        return False
    try:
        return bool(json.loads(stamp.read_text()) == versions.all_versions())
    except ValueError:
        return False


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_all(home: Path, binaries: Binaries) -> None:
    (home / ".stamp").unlink(missing_ok=True)
    binaries.bin_dir.mkdir(parents=True, exist_ok=True)
    log = home / "build.log"
    log.write_text("")
    go = go_binary()
    env = go_env()
    timings: dict[str, float] = {}
    started = time.monotonic()
    for wrapper in _wrappers(go, env, log):
        t0 = time.monotonic()
        _build_wrapper(go, env, home / "src" / wrapper.name, wrapper, binaries.bin_dir, log)
        timings[wrapper.name] = round(time.monotonic() - t0, 1)
    total = round(time.monotonic() - started, 1)
    record = {
        "seconds": total,
        "components": timings,
        "versions": versions.all_versions(),
        "go": run_logged([go, "env", "GOVERSION"], env=env, log=log).strip(),
        "parallelism": BUILD_PARALLELISM,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    build_time_file(home.parent).write_text(json.dumps(record, indent=2) + "\n")
    if missing := binaries.missing():
        raise BuildError(f"build finished but binaries are missing: {missing}")
    (home / ".stamp").write_text(json.dumps(versions.all_versions()))


def _wrappers(go: str, env: Mapping[str, str], log: Path) -> list[_Wrapper]:
    kube = versions.KUBERNETES
    major, minor = kube.removeprefix("v").split(".")[:2]
    info = module_info(go, env, log, "k8s.io/kubernetes", kube)
    released = json.loads(Path(info["Info"]).read_text())["Time"]
    kube_ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        kube_ldflags += [
            f"-X {pkg}.gitVersion={kube}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=archive",
            f"-X {pkg}.gitCommit=",  # not known from a module; empty beats "$Format:%H$"
            f"-X {pkg}.buildDate={released}",
        ]
    return [
        _Wrapper(
            name="etcd",
            requires={"go.etcd.io/etcd/server/v3": versions.ETCD},
            commands={"etcd": "go.etcd.io/etcd/server/v3"},
            ldflags=("-s", "-w"),
        ),
        _Wrapper(
            name="kubernetes",
            requires={"k8s.io/kubernetes": kube},
            replaces=_staging_replaces(go, env, log),
            commands={
                name: f"k8s.io/kubernetes/cmd/{name}"
                for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
            },
            ldflags=tuple(kube_ldflags),
        ),
        _Wrapper(
            name="kwok",
            requires={"sigs.k8s.io/kwok": versions.KWOK},
            commands={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
            ldflags=("-s", "-w", f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.KWOK}"),
        ),
        _Wrapper(
            name="helm",
            requires={"helm.sh/helm/v4": versions.HELM},
            commands={"helm": "helm.sh/helm/v4/cmd/helm"},
            ldflags=(
                "-s",
                "-w",
                f"-X helm.sh/helm/v4/internal/version.version={versions.HELM}",
                "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
            ),
        ),
    ]


def module_info(
    go: str, env: Mapping[str, str], log: Path, module: str, version: str
) -> dict[str, str]:
    out = run_logged([go, "mod", "download", "-json", f"{module}@{version}"], env=env, log=log)
    info: dict[str, str] = json.loads(out)
    if "Error" in info:
        raise BuildError(f"{module}@{version}: {info['Error']}")
    return info


def _staging_replaces(go: str, env: Mapping[str, str], log: Path) -> dict[str, str]:
    """Map every staging module k8s.io/kubernetes requires to its published release."""
    info = module_info(go, env, log, "k8s.io/kubernetes", versions.KUBERNETES)
    upstream = json.loads(run_logged([go, "mod", "edit", "-json", info["GoMod"]], env=env, log=log))
    staged = {
        r["Old"]["Path"]
        for r in upstream.get("Replace") or []
        if r["New"]["Path"].startswith("./staging/")
    }
    required = {r["Path"] for r in upstream.get("Require") or []}
    staging = versions.staging_version()
    replaces = {module: staging for module in sorted(staged & required)}
    if "k8s.io/api" not in replaces:
        raise BuildError("k8s.io/kubernetes go.mod lists no staging modules; layout changed?")
    return replaces


def _write_kwok_stages(go: str, env: Mapping[str, str], log: Path, target: Path) -> None:
    module = Path(module_info(go, env, log, "sigs.k8s.io/kwok", versions.KWOK)["Dir"])
    docs = [(module / rel).read_text().strip() for rel in KWOK_STAGES]
    target.write_text("\n---\n".join(docs) + "\n")


def _build_wrapper(
    go: str, env: Mapping[str, str], src: Path, wrapper: _Wrapper, bin_dir: Path, log: Path
) -> None:
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    lines = [f"module streampulse.test/controlplane/{wrapper.name}", "", "go 1.26", ""]
    lines += [f"require {mod} {ver}" for mod, ver in wrapper.requires.items()]
    if wrapper.replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in wrapper.replaces.items()]
        lines += [")"]
    lines += ["", "tool ("] + [f"\t{pkg}" for pkg in wrapper.commands.values()] + [")", ""]
    (src / "go.mod").write_text("\n".join(lines))
    run_logged([go, "mod", "tidy"], env=env, log=log, cwd=src)
    out = str(bin_dir) + os.sep
    ldflags = " ".join(wrapper.ldflags)
    cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", out, *wrapper.commands.values()]
    run_logged(cmd, env=env, log=log, cwd=src)
    for name, pkg in wrapper.commands.items():
        built = bin_dir / _default_binary_name(pkg)
        if built.name != name:
            built.replace(bin_dir / name)


def _default_binary_name(pkg: str) -> str:
    parts = pkg.split("/")
    last = parts[-1]
    if len(parts) > 1 and last.startswith("v") and last[1:].isdigit():
        return parts[-2]
    return last


def go_binary() -> str:
    found = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).is_file():
        raise BuildError("no Go toolchain: install Go 1.26 or set GO=/path/to/go")
    return found


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOWORK="off",
        GOFLAGS=f"-p={BUILD_PARALLELISM} -mod=mod -buildvcs=false",
    )
    return env


def run_logged(
    cmd: list[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> str:
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}  (in {cwd or Path.cwd()})\n")
        sink.flush()
        proc = subprocess.run(
            ["nice", "-n", "19", *cmd],
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}:\n{tail}")
    return proc.stdout
