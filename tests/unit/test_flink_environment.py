"""The Flink job's environment: Flink's S3 file system is a plugin of its own directory, which
the job's process is pointed at, and never one of the ``pipeline.jars``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.flink import load_flink_module

pytestmark = pytest.mark.unit

environment = load_flink_module("environment.py", "streampulse_flink_environment")


def test_the_s3_plugin_has_its_own_directory_named_to_the_job(tmp_path: Path) -> None:
    home = environment.jars_dir(tmp_path)
    (home / "lib").mkdir(parents=True)
    (home / "lib" / "paimon-flink.jar").touch()
    plugin = home / "plugins" / "s3-fs-hadoop"
    plugin.mkdir(parents=True)
    (plugin / "flink-s3-fs-hadoop-2.1.1.jar").touch()
    env = environment.FlinkEnvironment(python=tmp_path / "python", jars_dir=home / "lib")

    assert env.process_env()["FLINK_PLUGINS_DIR"] == str(home / "plugins")
    assert "s3-fs-hadoop" not in env.pipeline_jars()  # a file system never in pipeline.jars
    assert environment.PLUGINS["s3-fs-hadoop"][1] == "flink-s3-fs-hadoop"


def test_the_jars_directory_changes_with_the_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = environment.jars_dir(tmp_path)
    monkeypatch.setitem(environment.PLUGINS, "s3-fs-hadoop", ("g", "a", "9"))
    assert environment.jars_dir(tmp_path) != before
