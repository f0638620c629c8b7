"""The Flink job of the local stack: its own venv and jars (``flink/environment.py``), run on
Flink's local mini-cluster as ``python -m streampulse_flink.job`` in that venv.

The job lives beside the workers in the repository (``flink/``), not inside this package: the
workers never import PyFlink (it pins old numpy/protobuf/pyarrow). ``make up`` builds the venv
first (``make flink-env``); here the script only reports where things are, or builds what is
missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from streampulse.errors import LauncherError

# workers/streampulse/local/flink_job.py -> the repository root
_REPOSITORY = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class FlinkJobEnvironment:
    python: Path
    jars: tuple[Path, ...]
    # environment for the job's process, from flink/environment.py (the job package's path)
    process_env: dict[str, str]

    @property
    def pipeline_jars(self) -> str:
        """The ``pipeline.jars`` value: ``file://`` URLs separated by semicolons."""
        return ";".join(jar.as_uri() for jar in self.jars)


def flink_project_dir(configured: Path | None) -> Path:
    """``flink/`` of the repository (or the configured directory)."""
    found = configured or _REPOSITORY / "flink"
    if not (found / "environment.py").is_file():
        raise LauncherError(
            f"the Flink job's directory was not found at {found}: run from a checkout of the "
            "repository or set STREAMPULSE_LOCAL__FLINK_DIR"
        )
    return found


def ensure_flink_environment(flink_dir: Path, cache_dir: Path) -> FlinkJobEnvironment:
    """Build (first time, a few minutes) or locate the job's venv and connector jars."""
    result = subprocess.run(
        [sys.executable, str(flink_dir / "environment.py")],
        env={**os.environ, "STREAMPULSE_CACHE_DIR": str(cache_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LauncherError(f"building the Flink environment failed:\n{result.stderr[-3000:]}")
    paths = json.loads(result.stdout)
    return FlinkJobEnvironment(
        python=Path(paths["python"]),
        jars=tuple(Path(j) for j in paths["jars"]),
        process_env=paths["env"],
    )


def job_argv(env: FlinkJobEnvironment, options: dict[str, object]) -> list[str]:
    """``python -m streampulse_flink.job --jars ... --<option> <value> ...``."""
    argv = [str(env.python), "-m", "streampulse_flink.job", "--jars", env.pipeline_jars]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv
