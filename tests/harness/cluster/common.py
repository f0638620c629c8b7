"""Shared pieces of the cluster harness: the cache layout, progress lines and logged commands.

Everything this package builds lives under one cache directory (``$STREAMPULSE_CACHE_DIR``,
default ``~/.cache/streampulse``), in directories named by what they hold:

- ``docker-<version>/``  the Docker engine started by the project (data-root, exec-root, socket);
- ``images-<name>-<recipe>/``  root filesystems of the base images, keyed by a hash of the recipe;
- ``node-components/<name>-<version>/``  Go (and C) builds for the node, stamped by version;
- ``node-image-<recipe>/``  the node image's build context;
- ``cluster-<name>/``  a running cluster's kubeconfig and state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tests.harness.kube.build import default_cache_dir, locked

__all__ = [
    "ClusterError",
    "Progress",
    "cache_root",
    "default_cache_dir",
    "locked",
    "log_tail",
    "recipe_hash",
    "run_capture",
    "run_step",
]

HEARTBEAT_S = 20.0


class ClusterError(RuntimeError):
    """Something the cluster harness needs failed; the message says what and where the log is."""


def cache_root(cache_dir: Path | None = None) -> Path:
    root = cache_dir if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


class Progress:
    """One line per step on stderr, stamped with the seconds since the command started.

    Long steps print a heartbeat line (see :func:`run_step`), so a multi-minute build never looks
    hung. ``quiet`` keeps the lines out of a test's output but still records them in ``lines``.
    """

    def __init__(self, prefix: str = "cluster", stream: TextIO | None = None, quiet: bool = False):
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()
        self.lines: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        line = f"[{self.prefix} {self.elapsed():7.1f}s] {message}"
        self.lines.append(line)
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Announce a step and, when it ends, how long it took."""
        self(f"{what} ...")
        t0 = time.monotonic()
        yield
        self(f"{what}: done in {time.monotonic() - t0:.1f}s")

    @contextlib.contextmanager
    def heartbeat(self, label: str, log: Path, every_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Print a heartbeat with ``log``'s last line while the body runs (for work done by code
        that prints nothing itself, such as another harness's build)."""
        stop = threading.Event()
        t0 = time.monotonic()

        def beat() -> None:
            while not stop.wait(every_s):
                self(f"  {label}: still running ({time.monotonic() - t0:.0f}s) | {_last_line(log)}")

        thread = threading.Thread(target=beat, name=f"heartbeat {label}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def recipe_hash(*parts: object) -> str:
    """A short, stable hash of a recipe's inputs (strings, bytes, paths' contents, JSON data)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, Path):
            data = part.name.encode() + b"\0" + part.read_bytes()
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = json.dumps(part, sort_keys=True).encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:12]


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_line(log: Path) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return tail[-1][:160] if tail else ""


def run_step(
    cmd: Sequence[str],
    *,
    log: Path,
    say: Progress,
    label: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: Path | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    timeout_s: float | None = None,
) -> None:
    """Run a long command with its output appended to ``log``; print a heartbeat while it runs.

    Raises :class:`ClusterError` with the log's tail when the command fails or outlives
    ``timeout_s``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("ab") as sink:
        sink.write(f"$ {' '.join(cmd)}  (in {cwd or Path.cwd()})\n".encode())
        sink.flush()
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
            proc = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=source,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            while True:
                try:
                    proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if timeout_s is not None and elapsed > timeout_s:
                        proc.kill()
                        proc.wait()
                        raise ClusterError(
                            f"{label}: still running after {timeout_s:.0f}s, killed; see {log}:\n"
                            f"{log_tail(log)}"
                        ) from None
                    say(f"  {label}: still running ({elapsed:.0f}s) | {_last_line(log)}")
    if proc.returncode != 0:
        raise ClusterError(
            f"{label}: `{' '.join(cmd)}` failed ({proc.returncode}); see {log}:\n{log_tail(log)}"
        )


def run_capture(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    timeout_s: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a short command and capture its output; raise :class:`ClusterError` when it fails."""
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`{' '.join(cmd)}` timed out after {timeout_s:.0f}s") from exc
    if check and proc.returncode != 0:
        raise ClusterError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-4000:]}"
        )
    return proc


def apt_install(packages: tuple[str, ...], log: Path, say: Progress) -> None:
    """Debian packages the host lacks, without recommends (the build steps run as root)."""
    run_step(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        log=log,
        say=say,
        label=f"apt-get install {' '.join(packages)}",
    )
