"""Build the node's binaries from the Go module proxy (and pause from C), each once per version.

Every component is built into ``<cache>/node-components/<name>-<version>/bin`` and stamped
(``.stamp``: module, version, packages, tags, ldflags, Go version); a second call with the same
stamp is a no-op. Two ways of building:

- *module*: the released module is copied out of the module cache and built as the main module,
  so its own ``go.mod`` (replace directives included) and ``go.sum`` apply: containerd, runc, the
  CNI plugins, crictl, metrics-server, local-path-provisioner, kube-router;
- *wrapper*: a generated module that requires the release: Kubernetes (its staging modules are
  replaced by their published ``v0.Y.Z``, as in ``tests.harness.kube.build``) and CoreDNS (a
  ``main`` package that links only the plugins a cluster DNS needs).

Builds run under ``nice`` with ``-p=2``; each prints a heartbeat line while it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.cluster import versions as v
from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    apt_install,
    cache_root,
    locked,
    recipe_hash,
    run_capture,
    run_step,
)
from tests.harness.kube.build import go_binary, go_env

BUILD_TIMEOUT_S = 3600.0

# Plugins of the cluster DNS: what kubeadm's Corefile uses, plus a few common ones. Linking only
# these (instead of CoreDNS's full list with its cloud SDKs) makes the build several times faster.
COREDNS_PLUGINS = (
    "autopath",
    "bind",
    "cache",
    "cancel",
    "debug",
    "errors",
    "forward",
    "health",
    "hosts",
    "kubernetes",
    "loadbalance",
    "log",
    "loop",
    "metrics",
    "ready",
    "reload",
    "rewrite",
    "template",
    "timeouts",
    "whoami",
)

PAUSE_C = r"""/* The sandbox process of every pod: sleeps, reaps children, exits on INT/TERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "streampulse-pause " PAUSE_VERSION

static void on_stop(int sig) {
    fprintf(stderr, "pause: signal %d, exiting\n", sig);
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts(VERSION);
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: not PID 1, children will not be reaped here\n");
    }
    struct sigaction stop = {0};
    stop.sa_handler = on_stop;
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    struct sigaction child = {0};
    child.sa_handler = on_child;
    child.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &child, NULL);
    for (;;) {
        pause();
    }
}
"""


@dataclass(frozen=True)
class GoBuild:
    """One Go component: where it comes from and which commands are built from it."""

    name: str
    module: str
    version: str
    commands: Mapping[str, str]
    """binary name -> package (relative to the module root in *module* mode, full otherwise)."""
    ldflags: tuple[str, ...] = ("-s", "-w")
    tags: tuple[str, ...] = ()
    cgo: bool = False
    wrapper: bool = False
    main_go: str = ""
    """*wrapper* mode with a generated main package (the single command is ``.``)."""
    replaces: Mapping[str, str] = field(default_factory=dict)
    c_libraries: Mapping[str, str] = field(default_factory=dict)
    """pkg-config name -> the Debian package that provides it (cgo builds link against them)."""

    def stamp(self, go_version: str) -> str:
        return json.dumps(
            {
                "module": self.module,
                "version": self.version,
                "commands": dict(self.commands),
                "ldflags": list(self.ldflags),
                "tags": list(self.tags),
                "cgo": self.cgo,
                "wrapper": self.wrapper,
                "main": recipe_hash(self.main_go),
                "replaces": dict(self.replaces),
                "go": go_version,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class NodeBinaries:
    """Paths of everything built for the node image and its component images."""

    dirs: Mapping[str, Path]
    """component name -> its ``bin`` directory."""

    def path(self, component: str, binary: str) -> Path:
        found = self.dirs[component] / binary
        if not found.is_file():
            raise ClusterError(f"{binary} of {component} is missing at {found}")
        return found


def components_home(cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / "node-components"


def _module_info(go: str, env: Mapping[str, str], module: str, version: str) -> dict[str, str]:
    proc = run_capture(
        [go, "mod", "download", "-json", f"{module}@{version}"], env=env, timeout_s=900
    )
    info: dict[str, str] = json.loads(proc.stdout)
    if "Error" in info:
        raise ClusterError(f"{module}@{version}: {info['Error']}")
    return info


def _kubernetes(go: str, env: Mapping[str, str]) -> GoBuild:
    kube = v.KUBERNETES
    major, minor = kube.removeprefix("v").split(".")[:2]
    info = _module_info(go, env, "k8s.io/kubernetes", kube)
    released = json.loads(Path(info["Info"]).read_text())["Time"]
    upstream = json.loads(run_capture([go, "mod", "edit", "-json", info["GoMod"]], env=env).stdout)
    staged = {
        r["Old"]["Path"]
        for r in upstream.get("Replace") or []
        if r["New"]["Path"].startswith("./staging/")
    }
    required = {r["Path"] for r in upstream.get("Require") or []}
    staging = f"v0.{minor}.{kube.removeprefix('v').split('.')[2]}"
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={kube}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=archive",
            f"-X {pkg}.gitCommit=",
            f"-X {pkg}.buildDate={released}",
        ]
    return GoBuild(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=kube,
        commands={
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in ("kubelet", "kubeadm", "kube-proxy", "kubectl")
        },
        ldflags=tuple(ldflags),
        wrapper=True,
        replaces={module: staging for module in sorted(staged & required)},
    )


def _coredns_main() -> str:
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"' for p in COREDNS_PLUGINS)
    return (
        "// CoreDNS with the plugins a cluster DNS needs (generated by tests/harness/cluster).\n"
        "package main\n\n"
        "import (\n"
        '\t_ "github.com/coredns/coredns/core/dnsserver"\n'
        '\t"github.com/coredns/coredns/coremain"\n'
        f"{imports}\n"
        ")\n\n"
        "func main() {\n\tcoremain.Run()\n}\n"
    )


def go_builds(go: str, env: Mapping[str, str]) -> list[GoBuild]:
    """Every Go component of the node, in build order (Kubernetes first: it shares the most)."""
    containerd_pkg = "github.com/containerd/containerd/v2"
    return [
        _kubernetes(go, env),
        GoBuild(
            name="containerd",
            module=containerd_pkg,
            version=v.CONTAINERD,
            commands={
                "containerd": "./cmd/containerd",
                "ctr": "./cmd/ctr",
                "containerd-shim-runc-v2": "./cmd/containerd-shim-runc-v2",
            },
            tags=(
                "urfave_cli_no_docs",
                "no_btrfs",
                "no_devmapper",
                "no_zfs",
                "osusergo",
                "netgo",
                "static_build",
            ),
            ldflags=(
                "-s",
                "-w",
                f"-X {containerd_pkg}/version.Version={v.CONTAINERD}",
                f"-X {containerd_pkg}/version.Package=github.com/containerd/containerd",
            ),
        ),
        GoBuild(
            name="runc",
            module="github.com/opencontainers/runc",
            version=v.RUNC,
            commands={"runc": "."},
            tags=("seccomp", "urfave_cli_no_docs"),
            cgo=True,
            c_libraries={"libseccomp": "libseccomp-dev"},
            ldflags=("-s", "-w", "-X main.gitCommit=release"),
        ),
        GoBuild(
            name="cni-plugins",
            module="github.com/containernetworking/plugins",
            version=v.CNI_PLUGINS,
            commands={
                "bridge": "./plugins/main/bridge",
                "loopback": "./plugins/main/loopback",
                "ptp": "./plugins/main/ptp",
                "host-local": "./plugins/ipam/host-local",
                "portmap": "./plugins/meta/portmap",
            },
            ldflags=(
                "-s",
                "-w",
                "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion="
                + v.CNI_PLUGINS,
            ),
        ),
        GoBuild(
            name="cri-tools",
            module="sigs.k8s.io/cri-tools",
            version=v.CRI_TOOLS,
            commands={"crictl": "./cmd/crictl"},
            ldflags=("-s", "-w", f"-X sigs.k8s.io/cri-tools/pkg/version.Version={v.CRI_TOOLS}"),
        ),
        GoBuild(
            name="coredns",
            module="github.com/coredns/coredns",
            version=v.COREDNS,
            commands={"coredns": "."},
            wrapper=True,
            main_go=_coredns_main(),
            ldflags=("-s", "-w", "-X github.com/coredns/coredns/coremain.GitCommit=release"),
        ),
        GoBuild(
            name="metrics-server",
            module="sigs.k8s.io/metrics-server",
            version=v.METRICS_SERVER,
            commands={"metrics-server": "./cmd/metrics-server"},
            ldflags=(
                "-s",
                "-w",
                f"-X k8s.io/client-go/pkg/version.gitVersion={v.METRICS_SERVER}",
                f"-X k8s.io/component-base/version.gitVersion={v.METRICS_SERVER}",
            ),
        ),
        GoBuild(
            name="local-path-provisioner",
            module="github.com/rancher/local-path-provisioner",
            version=v.LOCAL_PATH_PROVISIONER,
            commands={"local-path-provisioner": "."},
            ldflags=("-s", "-w", f"-X main.VERSION={v.LOCAL_PATH_PROVISIONER}"),
        ),
        GoBuild(
            name="kube-router",
            module="github.com/cloudnativelabs/kube-router/v2",
            version=v.KUBE_ROUTER,
            commands={"kube-router": "./cmd/kube-router"},
            ldflags=(
                "-s",
                "-w",
                f"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version={v.KUBE_ROUTER}",
            ),
        ),
    ]


def ensure_node_binaries(
    cache_dir: Path | None = None, say: Progress | None = None
) -> NodeBinaries:
    """Build every node component that is missing or stale; return where they are."""
    say = say or Progress()
    home = components_home(cache_dir)
    home.mkdir(parents=True, exist_ok=True)
    go = go_binary()
    env = go_env()
    go_version = run_capture([go, "env", "GOVERSION"], env=env).stdout.strip()
    dirs: dict[str, Path] = {}
    with locked(home / ".lock"):
        for build in go_builds(go, env):
            dirs[build.name] = _ensure_go(build, home, go, env, go_version, say)
        dirs["pause"] = _ensure_pause(home, say)
    return NodeBinaries(dirs=dirs)


def _is_current(stamp: Path, expected: str, bin_dir: Path, names: list[str]) -> bool:
    if not stamp.is_file() or stamp.read_text() != expected:
        return False
    return all((bin_dir / name).is_file() for name in names)


def _ensure_go(
    build: GoBuild,
    home: Path,
    go: str,
    base_env: Mapping[str, str],
    go_version: str,
    say: Progress,
) -> Path:
    target = home / f"{build.name}-{build.version}"
    bin_dir = target / "bin"
    stamp_file = target / ".stamp"
    expected = build.stamp(go_version)
    if _is_current(stamp_file, expected, bin_dir, list(build.commands)):
        return bin_dir
    stamp_file.unlink(missing_ok=True)
    if bin_dir.exists():
        shutil.rmtree(bin_dir)
    bin_dir.mkdir(parents=True)
    env = dict(base_env)
    if build.cgo:
        env["CGO_ENABLED"] = "1"
    log = target / "build.log"
    log.write_text("")
    _ensure_c_libraries(build, log, say)
    with say.step(f"go build {build.name} {build.version} ({', '.join(build.commands)})"):
        src = target / "src"
        if src.exists():
            _make_writable(src)
            shutil.rmtree(src)
        if build.wrapper:
            packages = _write_wrapper(build, src)
            run_step(
                ["nice", "-n", "19", go, "mod", "tidy"],
                log=log,
                say=say,
                label=f"{build.name}: go mod tidy",
                env=env,
                cwd=src,
                timeout_s=BUILD_TIMEOUT_S,
            )
        else:
            info = _module_info(go, env, build.module, build.version)
            shutil.copytree(info["Dir"], src, symlinks=True)
            _make_writable(src)
            packages = list(build.commands.values())
        argv = ["nice", "-n", "19", go, "build", "-trimpath"]
        if build.tags:
            argv += ["-tags", ",".join(build.tags)]
        argv += ["-ldflags", " ".join(build.ldflags), "-o", str(bin_dir) + os.sep, *packages]
        run_step(
            argv,
            log=log,
            say=say,
            label=f"{build.name}: go build",
            env=env,
            cwd=src,
            timeout_s=BUILD_TIMEOUT_S,
        )
        for name, pkg in build.commands.items():
            built = bin_dir / _default_binary_name(pkg, src)
            if built.name != name and built.is_file():
                built.replace(bin_dir / name)
        missing = [name for name in build.commands if not (bin_dir / name).is_file()]
        if missing:
            raise ClusterError(f"{build.name}: build finished without {missing}; see {log}")
    stamp_file.write_text(expected)
    return bin_dir


def _write_wrapper(build: GoBuild, src: Path) -> list[str]:
    src.mkdir(parents=True)
    lines = [f"module streampulse.test/node/{build.name}", "", "go 1.26", ""]
    lines.append(f"require {build.module} {build.version}")
    if build.replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in build.replaces.items()]
        lines.append(")")
    if build.main_go:
        (src / "main.go").write_text(build.main_go)
        packages = ["."]
    else:
        lines += ["", "tool ("] + [f"\t{pkg}" for pkg in build.commands.values()] + [")"]
        packages = list(build.commands.values())
    (src / "go.mod").write_text("\n".join(lines) + "\n")
    return packages


def _default_binary_name(pkg: str, src: Path) -> str:
    """The file name ``go build -o dir/`` gives a package's binary."""
    if pkg == ".":
        module_line = (src / "go.mod").read_text().splitlines()[0]
        pkg = module_line.split()[1]
    parts = pkg.rstrip("/").split("/")
    last = parts[-1]
    if len(parts) > 1 and last.startswith("v") and last[1:].isdigit():
        return parts[-2]
    return last


def _make_writable(root: Path) -> None:
    """The module cache is read-only; a copy of it must be writable to build in and delete."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    root.chmod(root.stat().st_mode | stat.S_IWUSR)


def _ensure_c_libraries(build: GoBuild, log: Path, say: Progress) -> None:
    """The C libraries a cgo build links against (and pkg-config), from Debian when missing."""
    if not build.c_libraries:
        return
    pkg_config = shutil.which("pkg-config")
    missing = [
        package
        for library, package in build.c_libraries.items()
        if pkg_config is None
        or run_capture([pkg_config, "--exists", library], check=False).returncode != 0
    ]
    if not missing:
        return
    packages = (*missing, "pkg-config")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"{build.name} needs {', '.join(packages)}: install them")
    apt_install(packages, log, say)


def _ensure_pause(home: Path, say: Progress) -> Path:
    target = home / f"pause-{v.PAUSE}"
    bin_dir = target / "bin"
    stamp_file = target / ".stamp"
    expected = recipe_hash(PAUSE_C, v.PAUSE, "gcc -Os -static")
    if _is_current(stamp_file, expected, bin_dir, ["pause"]):
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = target / "pause.c"
    source.write_text(PAUSE_C)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ClusterError("no C compiler for pause: apt-get install gcc libc6-dev")
    with say.step(f"cc pause {v.PAUSE} (static)"):
        run_step(
            [
                cc,
                "-Os",
                "-static",
                "-Wall",
                f'-DPAUSE_VERSION="{v.PAUSE}"',
                "-o",
                str(bin_dir / "pause"),
                str(source),
            ],
            log=target / "build.log",
            say=say,
            label="cc pause",
        )
        run_step(
            ["strip", str(bin_dir / "pause")], log=target / "build.log", say=say, label="strip"
        )
    stamp_file.write_text(expected)
    return bin_dir
