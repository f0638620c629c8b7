"""Child processes of the local stack: started in their own session, stopped in reverse order."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streampulse.errors import LauncherError

log = logging.getLogger(__name__)


@dataclass
class Child:
    """One ``streampulse <command>`` process (or another ``program``), output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "streampulse.cli"])
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.program, *self.args],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.debug("started %s (pid %d), log %s", self.name, self.process.pid, self.log_path)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        """Block until ``text`` appears in the log; fail if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if not self.alive():
                raise LauncherError(f"{self.name} exited early; see {self.log_path}")
            time.sleep(0.1)
        raise LauncherError(f"{self.name} did not print {text!r} within {timeout_s}s")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL it if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout_s)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
