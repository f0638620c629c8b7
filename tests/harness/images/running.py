"""Running the built images the way the operator's pods run them, for smoke tests.

A pod the operator renders runs as a fixed non-root uid with a read-only root filesystem, every
capability dropped, no privilege escalation and an ``emptyDir`` at ``/tmp``; ``docker run`` gets
the same with ``--read-only --tmpfs /tmp --user --cap-drop ALL --security-opt no-new-privileges``.
Servers use the host's network and bind 127.0.0.1; one-shot commands get a network namespace of
their own with loopback only (``--network none``). Nothing listens beyond this machine.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster.common import ClusterError
from tests.harness.cluster.engine import Engine

POD_FLAGS = (
    "--read-only",
    # an emptyDir is writable by the pod's user and allows exec, unlike docker's tmpfs default
    "--tmpfs",
    "/tmp:rw,exec,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)

SMOKE_HOST = "streampulse-smoke"


def python_version_of(engine: Engine, image: str) -> str:
    """The version of an image's ``python3`` (e.g. ``3.11.2``)."""
    proc = engine.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        image,
        "-c",
        "import platform; print(platform.python_version())",
    )
    return proc.stdout.strip()


def restricted_argv(
    image: str,
    args: Sequence[str] = (),
    *,
    user: int | None,
    network: str = "none",
    env: Mapping[str, str] | None = None,
    mounts: Mapping[Path, str] | None = None,
    entrypoint: str | None = None,
    scratch: Sequence[str] = (),
) -> list[str]:
    """``docker run`` options and arguments of a pod-like container (without ``run`` itself).

    ``user`` None keeps the image's own user (to check what it is); ``mounts`` are read-only;
    ``scratch`` directories are writable and empty, as the emptyDirs the manifests mount there.
    """
    argv = [*POD_FLAGS, "--network", network]
    for path in scratch:
        argv += ["--tmpfs", f"{path}:rw,exec,mode=1777"]
    if network == "none":  # a pod's /etc/hosts names its own hostname (the JVM resolves it)
        argv += ["--hostname", SMOKE_HOST, "--add-host", f"{SMOKE_HOST}:127.0.0.1"]
    if user is not None:
        argv += ["--user", f"{user}:{user}"]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    for source, target in (mounts or {}).items():
        argv += ["--volume", f"{source}:{target}:ro"]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return [*argv, image, *args]


def run_once(
    engine: Engine,
    image: str,
    args: Sequence[str] = (),
    *,
    user: int | None,
    env: Mapping[str, str] | None = None,
    mounts: Mapping[Path, str] | None = None,
    entrypoint: str | None = None,
    timeout_s: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot command in a pod-like container and capture its output (not checked)."""
    argv = restricted_argv(
        image, args, user=user, env=env, mounts=mounts, entrypoint=entrypoint, network="none"
    )
    return engine.docker("run", "--rm", *argv, timeout_s=timeout_s, check=False)


@dataclass(frozen=True)
class Running:
    """A detached container started by :func:`serving`."""

    engine: Engine
    name: str

    def logs(self) -> str:
        proc = self.engine.docker("logs", "--tail", "80", self.name, check=False)
        return (proc.stdout + proc.stderr)[-6000:]

    def running(self) -> bool:
        proc = self.engine.docker(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        )
        return proc.stdout.strip() == "true"

    def uid(self) -> int:
        """The uid its main process runs as."""
        proc = self.engine.docker("top", self.name, "-o", "pid,uid", check=True)
        return int(proc.stdout.splitlines()[1].split()[1])


@contextmanager
def serving(
    engine: Engine,
    image: str,
    args: Sequence[str] = (),
    *,
    user: int,
    env: Mapping[str, str] | None = None,
    mounts: Mapping[Path, str] | None = None,
    entrypoint: str | None = None,
    scratch: Sequence[str] = (),
) -> Iterator[Running]:
    """A pod-like server container on the host's network, removed afterwards."""
    name = f"streampulse-smoke-{uuid.uuid4().hex[:8]}"
    argv = restricted_argv(image, args, user=user, env=env, mounts=mounts,
                           entrypoint=entrypoint, network="host", scratch=scratch)  # fmt: skip
    engine.docker("run", "--detach", "--name", name, *argv)
    try:
        yield Running(engine, name)
    finally:
        engine.docker("rm", "--force", name, check=False)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def http(url: str, data: bytes | None = None, timeout_s: float = 10.0) -> Answer:
    """GET (or POST ``data`` as JSON) and return the status and body, error statuses included."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read())


def wait_for_http(
    url: str, container: Running, *, status: int = 200, timeout_s: float = 120.0
) -> Answer:
    """Poll ``url`` until it answers ``status``; fail early, with the logs, if the container
    exits, and with the logs when the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            answer = http(url, timeout_s=5.0)
            if answer.status == status:
                return answer
            last = f"HTTP {answer.status}: {answer.body[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        if not container.running():
            raise ClusterError(
                f"{container.name} exited before {url} answered:\n{container.logs()}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{url} did not answer {status} within {timeout_s:.0f}s ({last}):\n"
                f"{container.logs()}"
            )
        time.sleep(0.2)
