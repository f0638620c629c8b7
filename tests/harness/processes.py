"""Run StreamPulse commands as real child processes, the way a user or a cluster runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


class ManagedProcess:
    """A child process whose output goes to a log file that tests can wait on."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @classmethod
    def streampulse(cls, args: list[str], env: dict[str, str], log_path: Path) -> ManagedProcess:
        """``streampulse <args>`` from the test interpreter's environment."""
        return cls([sys.executable, "-m", "streampulse.cli", *args], env, log_path)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """Wait until the log matches ``pattern``; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.output())
            if match:
                return match
            if self.process.poll() is not None:
                match = regex.search(self.output())
                if match:
                    return match
                raise AssertionError(
                    f"{self.argv} exited {self.process.returncode} before /{pattern}/:\n"
                    f"{self.output()[-4000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no /{pattern}/ within {timeout_s}s:\n{self.output()[-4000:]}")

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{self.argv} still running after {timeout_s}s:\n{self.output()[-4000:]}"
            ) from exc

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; always closes the log."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        self._log.close()
