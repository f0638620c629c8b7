"""The Flink job and its batch queries as real child processes, in the job's own venv.

The venv and the connector jars are built by ``flink/environment.py`` (``make flink-env``) into
the cache; this module loads that script by path (it is standard library only), so the workers'
test environment never imports PyFlink.
"""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from streampulse.lakehouse.reading import Lakehouse
from tests.harness.processes import ManagedProcess

FLINK_DIR = Path(__file__).resolve().parents[2] / "flink"


def load_flink_module(relative: str, name: str) -> ModuleType:
    """Import a standard-library-only module of ``flink/`` by path, under ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FLINK_DIR / relative)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {relative} from {FLINK_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def flink_environment(cache_dir: Path) -> Any:
    """The job's venv python and connector jars (built the first time)."""
    environment = load_flink_module("environment.py", "streampulse_flink_environment")
    return environment.ensure(cache_dir)


class FlinkJob:
    """``python -m streampulse_flink.job`` on the local mini-cluster.

    Flink's temporary files go to a directory beside the log, removed when the job has exited.
    """

    def __init__(
        self,
        env: Any,
        args: dict[str, object],
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.scratch_dir = log_path.with_name(f"{log_path.stem}-scratch")
        args = {"scratch_dir": self.scratch_dir, **args}
        argv = [str(env.python), "-m", "streampulse_flink.job", "--jars", env.pipeline_jars()]
        for key, value in args.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        environ = {"PYTHONUNBUFFERED": "1", **env.process_env(), **(extra_env or {})}
        self.process = ManagedProcess(argv, environ, log_path)

    def wait_started(self, timeout_s: float = 180.0) -> str:
        return self.process.wait_for_output(r"job started: (\w+)", timeout_s).group(1)

    def stop(self) -> None:
        self.process.stop(timeout_s=30.0)
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def kill(self) -> None:
        """A crash: SIGKILL the job's process group, no chance to finish anything."""
        self.process.signal(signal.SIGKILL)
        self.stop()


def latest_checkpoint(checkpoint_dir: Path, job_id: str) -> Path:
    """The newest completed checkpoint of a job (``chk-N`` holding its ``_metadata``)."""
    done = [p.parent for p in (checkpoint_dir / job_id).glob("chk-*/_metadata")]
    if not done:
        raise AssertionError(f"no completed checkpoint under {checkpoint_dir / job_id}")
    return max(done, key=lambda p: int(p.name.removeprefix("chk-")))


def query(env: Any, warehouse: Path | str, queries: list[str]) -> list[list[dict[str, Any]]]:
    """Run batch SQL over the Paimon tables; one list of row dicts per query."""
    argv = [str(env.python), "-m", "streampulse_flink.query", "--warehouse", str(warehouse)]
    with tempfile.TemporaryDirectory(prefix="streampulse-flink-query-") as scratch:
        result = subprocess.run(
            [*argv, "--jars", env.pipeline_jars(), "--scratch-dir", scratch, *queries],
            env={**os.environ, **env.process_env()},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        raise AssertionError(f"query failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [line["rows"] for line in lines]


def _plain(value: Any) -> Any:
    """Values as the Flink query prints them: ISO dates and times, floats for decimals."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_tables(lakehouse: Lakehouse, queries: list[str]) -> list[list[dict[str, Any]]]:
    """The same queries through pypaimon and DuckDB (no JVM): what ``streampulse sql`` reads."""
    out = []
    for sql in queries:
        rows = lakehouse.query(sql).table.to_pylist()
        out.append([{k: _plain(v) for k, v in row.items()} for row in rows])
    return out


def wait_until(
    probe: Callable[[], Any], accept: Callable[[Any], bool], timeout_s: float, what: str
) -> Any:
    """Call ``probe`` until ``accept`` holds for its answer; fail with the last one."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if accept(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout_s}s; last: {last!r}")
