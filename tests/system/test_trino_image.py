"""The Trino image (``operator/Dockerfile.trino``) built here and run as the operator's pods run
it: the Iceberg REST catalog from the operator's command line, and Trino from the operator's
rendered configuration (only the addresses made local) reading the lakehouse catalog through that
REST catalog. Both containers run as the pods do: their uid, a read-only root filesystem, no
capabilities, on this machine's loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from streampulse.local.ports import free_port
from streampulse.local.trino_client import TrinoClient, TrinoQueryError
from streampulse_operator.manifests import render
from streampulse_operator.manifests.trino import (
    CATALOG,
    TRINO_UID,
    lakehouse_catalog,
    rest_catalog_command,
)
from tests.harness.cluster.common import default_cache_dir
from tests.harness.cluster.engine import Engine, ensure_engine
from tests.harness.images import build_images
from tests.harness.images.running import Running, http, serving, wait_for_http
from tests.harness.kube.process import StartupError, wait_until
from tests.unit.operator_unit.cases import CASES, OWNER, defaulted

pytestmark = [pytest.mark.system, pytest.mark.timeout(3600)]
NAMESPACE = "streampulse"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return ensure_engine()


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    return build_images(default_cache_dir(), only=["trino"])["trino"].tag


def _option(command: list[str], name: str, value: str) -> None:
    command[command.index(name) + 1] = value


def _properties(text: str, changes: dict[str, str] | None = None) -> str:
    values = dict(line.split("=", 1) for line in text.splitlines() if line)
    values |= changes or {}
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _etc(root: Path, rest_port: int, http_port: int) -> Path:
    """/etc/trino as the operator's ConfigMap mounts it, with local addresses."""
    spec = defaulted(CASES["example"])
    data = next(o["data"] for o in render(OWNER, spec) if o["metadata"]["name"] == "demo-trino")
    etc = root / "etc"
    (etc / "catalog").mkdir(parents=True)
    uri = f"http://127.0.0.1:{http_port}"
    (etc / "config.properties").write_text(
        _properties(
            data["coordinator.properties"],
            {
                "http-server.http.port": str(http_port),
                "discovery.uri": uri,
                "node-scheduler.include-coordinator": "true",
            },
        )
    )
    (etc / "node.properties").write_text(
        _properties(
            data["node.properties"],
            {"node.bind-ip": "127.0.0.1", "node.internal-address": "127.0.0.1"},
        )
    )
    (etc / "jvm.config").write_text(data["jvm.config"] + "-Xmx1g\n")
    catalog = lakehouse_catalog(OWNER, spec) | {
        "iceberg.rest-catalog.uri": f"http://127.0.0.1:{rest_port}"
    }
    assert _properties(data[f"{CATALOG}.properties"]) == _properties(
        "".join(f"{k}={v}\n" for k, v in lakehouse_catalog(OWNER, spec).items())
    )
    (etc / "catalog" / f"{CATALOG}.properties").write_text(
        "".join(f"{k}={v}\n" for k, v in catalog.items())
    )
    (etc / "catalog" / "tpch.properties").write_text("connector.name=tpch\n")
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return etc


def _answering(client: TrinoClient, container: Running, timeout_s: float) -> list[list[object]]:
    """The nation count once Trino answers (connection refused or not yet active: retried)."""

    def alive() -> None:
        if not container.running():
            pytest.fail(f"Trino exited:\n{container.logs()}")

    try:
        rows: list[list[object]] = wait_until(
            lambda: client.query("SELECT count(*) FROM tpch.tiny.nation").rows,
            timeout=timeout_s, what="Trino answering", interval=1.0, alive=alive,
        )  # fmt: skip
    except StartupError as exc:
        pytest.fail(f"{exc}:\n{container.logs()}")
    return rows


def test_trino_reads_the_lakehouse_through_the_rest_catalog_as_the_operator_runs_them(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse"
    (warehouse / "iceberg" / NAMESPACE).mkdir(parents=True)  # a namespace of a Hadoop catalog
    rest_port, http_port = free_port(), free_port()
    command = rest_catalog_command(OWNER, defaulted(CASES["example"]))
    _option(command, "--warehouse", "file:///warehouse/iceberg")
    _option(command, "--bind", "127.0.0.1")
    _option(command, "--port", str(rest_port))
    etc = _etc(tmp_path, rest_port, http_port)
    warehouse.chmod(0o755)
    (warehouse / "iceberg").chmod(0o755)
    (warehouse / "iceberg" / NAMESPACE).chmod(0o755)
    with serving(engine, image, command[1:], user=TRINO_UID, entrypoint=command[0],
                 mounts={warehouse: "/warehouse"}) as rest:  # fmt: skip
        base = f"http://127.0.0.1:{rest_port}"
        config = wait_for_http(f"{base}/v1/config", rest, timeout_s=120).json()
        namespaces = http(f"{base}/v1/namespaces").json()
        refused = http(f"{base}/v1/namespaces", b'{"namespace": ["x"]}')
        assert rest.uid() == TRINO_UID
        env = {"S3_ACCESS_KEY": "unused", "S3_SECRET_KEY": "unused"}
        with serving(engine, image, user=TRINO_UID, env=env, mounts={etc: "/etc/trino"},
                     scratch=["/data/trino"]) as trino:  # fmt: skip
            with TrinoClient(f"http://127.0.0.1:{http_port}", timeout_s=30.0) as client:
                nation = _answering(client, trino, timeout_s=240)
                schemas = client.query(f"SHOW SCHEMAS FROM {CATALOG}").rows
                with pytest.raises(TrinoQueryError) as written:
                    client.query(f"CREATE SCHEMA {CATALOG}.written")
            assert trino.uid() == TRINO_UID
    assert isinstance(config, dict)
    assert isinstance(namespaces, dict)
    assert namespaces["namespaces"] == [[NAMESPACE]]
    assert refused.status == 405
    assert nation == [[25]]
    assert [NAMESPACE] in schemas
    assert "Access Denied" in str(written.value) or "read" in str(written.value).lower()
