"""A local Java server with a readiness probe: started, waited for with a deadline, stopped.

Subclasses say how to launch (``_command``) and when the server serves (``_ready``); the base
holds what every one has: a Java home, a bind address and port (0: a free one), a heap. Output goes
to ``<data_dir>/<name>.log``; a server that exits or misses its deadline raises
``LauncherError`` with the log's tail. ``stop()`` sends SIGTERM to the process group, waits,
then kills it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Self

from streampulse.errors import LakehouseError, LauncherError
from streampulse.local.ports import free_port
from streampulse.local.processes import Child

log = logging.getLogger(__name__)

_LOG_TAIL_CHARS = 4000


def connect_host(bind_host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``bind_host``."""
    return "127.0.0.1" if bind_host in {"0.0.0.0", "::", ""} else bind_host  # noqa: S104


class JavaServer:
    """One HTTP server process of the project's, in its own session."""

    name = "server"

    def __init__(
        self,
        java_home: Path,
        data_dir: Path,
        *,
        host: str,
        port: int,
        heap_mb: int,
        start_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self.java_home = java_home
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._child: Child | None = None

    @property
    def uri(self) -> str:
        return f"http://{connect_host(self.host)}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """argv and the environment variables added to this process's own."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the server serves; raising ``LakehouseError`` counts as not yet."""
        raise NotImplementedError

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def start(self) -> None:
        """Launch the process and block until ``_ready()`` or the deadline."""
        if self._child is not None:
            raise LauncherError(f"{self.name} already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        argv, env = self._command()
        started = time.monotonic()
        self._child = Child(self.name, argv[1:], env, self.log_path, program=argv[:1]).start()
        deadline = started + self.start_timeout_s
        while time.monotonic() < deadline:
            if not self._child.alive():
                self.stop()
                raise LauncherError(f"{self.name} exited while starting:\n{self.log_tail()}")
            try:
                if self._ready():
                    log.info(
                        "%s ready in %.1fs (pid %s)",
                        self.name,
                        time.monotonic() - started,
                        self.pid,
                    )
                    return
            except LakehouseError:
                pass  # not serving yet
            time.sleep(0.5)
        self.stop()
        raise LauncherError(
            f"{self.name} not ready within {self.start_timeout_s}s:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout_s``; closes the log."""
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout_s=self.stop_timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
