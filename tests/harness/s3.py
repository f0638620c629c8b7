"""A real S3-compatible server for tests: versitygw (Apache-2.0) over a local directory.

The binary is built once from the Go module proxy into ``$STREAMPULSE_CACHE_DIR/versitygw-<v>``
(``python -m tests.harness.s3`` builds it ahead, as ``make s3`` does). Its posix backend maps
buckets to the directories under its root, so a bucket is created with ``mkdir``.
"""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path
from types import TracebackType

from streampulse.local.ports import free_port
from tests.harness.kube.build import default_cache_dir, go_binary, go_env, locked, run_logged
from tests.harness.processes import ManagedProcess

VERSITYGW_VERSION = "v1.8.0"
VERSITYGW_PACKAGE = "github.com/versity/versitygw/cmd/versitygw"


def ensure_versitygw(cache_dir: Path | None = None) -> Path:
    """The versitygw binary, built with ``go install`` the first time (about 5 minutes)."""
    home = (cache_dir or default_cache_dir()) / f"versitygw-{VERSITYGW_VERSION.removeprefix('v')}"
    binary = home / "bin" / "versitygw"
    if binary.is_file():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not binary.is_file():
            env = {**go_env(), "GOBIN": str(home / "bin.partial")}
            run_logged([go_binary(), "install", f"{VERSITYGW_PACKAGE}@{VERSITYGW_VERSION}"],
                 env=env, log=home / "build.log")  # fmt: skip
            (home / "bin.partial").rename(home / "bin")
    return binary


class S3Server:
    """versitygw on a free loopback port with one bucket; a context manager."""

    region = "us-east-1"

    def __init__(self, root: Path, bucket: str = "streampulse", cache_dir: Path | None = None):
        self.root = root
        self.bucket = bucket
        self.access_key = "streampulse-test"
        self.secret_key = secrets.token_hex(16)
        self.port = free_port()
        self._binary = ensure_versitygw(cache_dir)
        self._process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        (self.root / "data" / self.bucket).mkdir(parents=True, exist_ok=True)
        argv = [str(self._binary), "--port", f"127.0.0.1:{self.port}", "--quiet",
                "posix", str(self.root / "data")]  # fmt: skip
        env = {"ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key}
        self._process = ManagedProcess(argv, env, self.root / "versitygw.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.process.poll() is not None:
                raise AssertionError(f"versitygw exited:\n{self._process.output()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"versitygw not listening within 30s:\n{self._process.output()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    print(ensure_versitygw())
