"""The Docker engine the cluster harness builds images with and runs the node on.

When an engine already answers (``$DOCKER_HOST``, the project's own socket, or the system's
``/var/run/docker.sock``) it is used as it is. Otherwise Debian's ``docker.io`` (Docker 20.10,
containerd 1.6, runc 1.1 on Debian 12) is installed if missing and ``dockerd`` is started with
all of its state under ``<cache>/docker-20.10/``: data-root, exec-root (its own containerd), the
API socket, the pidfile and the log. ``stop_engine`` stops only an engine started that way.

The engine is started with ``--iptables=false --ip-forward=false``: it changes nothing in the
host's netfilter tables and never turns on IP forwarding, so container traffic reaches only the
host and other containers (published ports go through ``docker-proxy`` on 127.0.0.1). Its
``--config-file`` is its own, so a host ``/etc/docker/daemon.json`` does not apply.

Any Docker client of API 1.41 or later talks to it: the client at ``/usr/local/bin/docker``
(28.x) negotiates the version down to 1.41 by itself. Its builder is the classic one
(``DOCKER_BUILDKIT=0`` is set for the client): 28.x needs the buildx plugin for BuildKit, and
BuildKit's ``# syntax=`` frontends come from a registry, which is not reachable here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    cache_root,
    locked,
    run_capture,
    run_step,
)

ENGINE_NAME = "docker-20.10"
"""Cache directory of the project's engine (Debian 12's docker.io is Docker 20.10)."""

ENGINE_PACKAGES = ("docker.io",)
"""Debian packages of the engine: dockerd, docker-proxy, containerd 1.6, runc 1.1, tini."""

SYSTEM_SOCKET = Path("/var/run/docker.sock")
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Engine:
    """A Docker engine that answers, and how to reach it."""

    host: str
    """``DOCKER_HOST`` value, e.g. ``unix:///root/.cache/streampulse/docker-20.10/run/docker.sock``."""
    started_here: bool
    """True when the project started this engine (``stop_engine`` stops it)."""
    server_version: str
    cli: str

    def env(self) -> dict[str, str]:
        """The environment for docker client commands against this engine."""
        env = dict(os.environ)
        env.update(DOCKER_HOST=self.host, DOCKER_BUILDKIT="0", DOCKER_CLI_HINTS="false")
        return env

    def docker(
        self,
        *args: str,
        input_text: str | None = None,
        timeout_s: float = 300.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>`` against this engine and capture its output."""
        return run_capture(
            [self.cli, *args],
            env=self.env(),
            input_text=input_text,
            timeout_s=timeout_s,
            check=check,
        )

    def image_label(self, image: str, label: str) -> str | None:
        """A label of a local image, or None when the image (or the label) is missing."""
        proc = self.docker("image", "inspect", image, check=False)
        if proc.returncode != 0:
            return None
        labels = (json.loads(proc.stdout)[0].get("Config") or {}).get("Labels") or {}
        value = labels.get(label)
        return str(value) if value is not None else None


def engine_home(cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / ENGINE_NAME


def _socket(home: Path) -> Path:
    return home / "run" / "docker.sock"


def docker_cli() -> str:
    """The docker client: ``$DOCKER`` or the first ``docker`` on PATH."""
    found = os.environ.get("DOCKER") or shutil.which("docker")
    if not found:
        raise ClusterError(
            "no docker client on PATH: install one (Debian's docker.io ships /usr/bin/docker) "
            "or set DOCKER=/path/to/docker"
        )
    return found


def _server_version(cli: str, host: str) -> str | None:
    env = dict(os.environ)
    env["DOCKER_HOST"] = host
    try:
        proc = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    version = proc.stdout.strip()
    return version if proc.returncode == 0 and version else None


def find_engine(cache_dir: Path | None = None) -> Engine | None:
    """An engine that answers now, in order: ``$DOCKER_HOST``, the project's, the system's."""
    cli = docker_cli()
    ours = f"unix://{_socket(engine_home(cache_dir))}"
    candidates: list[tuple[str, bool]] = []
    if env_host := os.environ.get("DOCKER_HOST"):
        candidates.append((env_host, env_host == ours))
    candidates.append((ours, True))
    candidates.append((f"unix://{SYSTEM_SOCKET}", False))
    for host, is_ours in candidates:
        if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
            continue
        if version := _server_version(cli, host):
            return Engine(host=host, started_here=is_ours, server_version=version, cli=cli)
    return None


def ensure_engine(cache_dir: Path | None = None, say: Progress | None = None) -> Engine:
    """Return an engine that answers, installing and starting the project's own if none does."""
    say = say or Progress()
    if engine := find_engine(cache_dir):
        return engine
    home = engine_home(cache_dir)
    home.mkdir(parents=True, exist_ok=True)
    with locked(home.parent / f"{ENGINE_NAME}.lock"):
        if engine := find_engine(cache_dir):  # another process started it meanwhile
            return engine
        install_engine(say)
        _start_dockerd(home, say)
    engine = find_engine(cache_dir)
    if engine is None:
        raise ClusterError(f"dockerd started but does not answer; see {home / 'dockerd.log'}")
    say(f"docker engine {engine.server_version} at {engine.host}")
    return engine


def install_engine(say: Progress) -> None:
    """``apt-get install docker.io`` when ``dockerd`` is missing (services are not started)."""
    if shutil.which("dockerd") or Path("/usr/sbin/dockerd").is_file():
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise ClusterError("dockerd is missing and there is no apt-get to install docker.io")
    sudo: list[str] = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = Path("/tmp") / f"streampulse-apt-{os.getpid()}.log"
    with _no_service_starts(bool(sudo)):
        run_step(
            [*sudo, apt, "install", "-y", "-q", "--no-install-recommends", *ENGINE_PACKAGES],
            log=log,
            say=say,
            label="apt-get install docker.io",
            env=env,
        )


@contextlib.contextmanager
def _no_service_starts(with_sudo: bool) -> Iterator[None]:
    """Keep the package's init scripts from starting the system's dockerd during the install.

    Debian consults ``/usr/sbin/policy-rc.d``; one that exits 101 forbids starting services. An
    existing policy is left alone; one created here is removed afterwards.
    """
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists() or with_sudo:
        yield
        return
    policy.write_text("#!/bin/sh\n# written by tests/harness/cluster during an install\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def _bridges() -> set[str]:
    return {p.parent.name for p in Path("/sys/class/net").glob("*/bridge")}


def _start_dockerd(home: Path, say: Progress) -> None:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    run_dir = home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = home / "daemon.json"
    config.write_text(json.dumps({"log-driver": "json-file"}) + "\n")
    sock = _socket(home)
    proxy = shutil.which("docker-proxy") or "/usr/sbin/docker-proxy"
    argv = [
        dockerd,
        "--config-file",
        str(config),
        "--data-root",
        str(home / "data"),
        "--exec-root",
        str(run_dir),
        "--pidfile",
        str(run_dir / "dockerd.pid"),
        "--host",
        f"unix://{sock}",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=true",
        "--userland-proxy-path",
        proxy,
        "--storage-driver",
        "overlay2",
    ]
    bridges_before = sorted(_bridges())
    log = home / "dockerd.log"
    say(f"starting dockerd (state in {home}, log {log})")
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = {"pid": proc.pid, "host": f"unix://{sock}", "bridges_before": bridges_before}
    (home / "started.json").write_text(json.dumps(state, indent=2) + "\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    cli = docker_cli()
    while _server_version(cli, f"unix://{sock}") is None:
        if proc.poll() is not None:
            raise ClusterError(f"dockerd exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise ClusterError(f"dockerd did not answer within {START_TIMEOUT_S:.0f}s; see {log}")
        time.sleep(0.25)


def _pid_is_our_dockerd(pid: int, home: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(cmdline)
        and cmdline[0].endswith(b"dockerd")
        and str(home).encode() in b" ".join(cmdline)
    )


def stop_engine(cache_dir: Path | None = None, say: Progress | None = None) -> bool:
    """Stop the engine this project started (never another one). True if one was stopped.

    dockerd stops its containers and its containerd on SIGTERM; bridges it created (``docker0``
    and user networks' ``br-*``) are deleted afterwards, so the host is left as it was.
    """
    say = say or Progress()
    home = engine_home(cache_dir)
    state_file = home / "started.json"
    if not state_file.is_file():
        say("no engine started by the project")
        return False
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    stopped = False
    if _pid_is_our_dockerd(pid, home):
        say(f"stopping dockerd (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_is_our_dockerd(pid, home) and time.monotonic() < deadline:
            time.sleep(0.25)
        if _pid_is_our_dockerd(pid, home):
            say(f"dockerd still running after {STOP_TIMEOUT_S:.0f}s: SIGKILL")
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        stopped = True
    else:
        say("the engine the project started is not running any more")
    for bridge in sorted(_bridges() - set(state.get("bridges_before", []))):
        if bridge == "docker0" or bridge.startswith("br-"):
            subprocess.run(["ip", "link", "delete", bridge], check=False, capture_output=True)
            say(f"deleted bridge {bridge}")
    state_file.unlink()
    return stopped


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
