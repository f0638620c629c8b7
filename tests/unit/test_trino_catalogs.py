"""The operator's Trino reads the lakehouse as the locally tested Trino does: the same catalog
name and properties (only addresses and where the keys come from differ), the same REST catalog
server over the same Iceberg metadata location."""

from __future__ import annotations

import pytest

from streampulse.local.iceberg_rest import SERVER_CLASS, S3Access, iceberg_location
from streampulse.local.trino import lakehouse_catalog as local_catalog
from streampulse.settings import TrinoSettings
from streampulse_operator.manifests import render
from streampulse_operator.manifests.lakehouse import s3_endpoint
from streampulse_operator.manifests.trino import (
    CATALOG,
    REST_SERVER_CLASS,
    iceberg_warehouse,
    lakehouse_catalog,
    rest_catalog_command,
    rest_catalog_url,
)
from tests.unit.operator_unit.cases import CASES, OWNER, defaulted

pytestmark = pytest.mark.unit
PER_INSTANCE = {"iceberg.rest-catalog.uri", "s3.endpoint", "s3.aws-access-key", "s3.aws-secret-key"}


@pytest.mark.parametrize("case", ["example", "external"])
def test_the_operators_catalog_is_the_one_the_tests_use(case: str) -> None:
    spec = defaulted(CASES[case])
    cluster = lakehouse_catalog(OWNER, spec)
    local = local_catalog("http://127.0.0.1:8181", S3Access("http://127.0.0.1:7070", "us-east-1",
                                                             "key", "secret"))  # fmt: skip
    assert cluster.keys() == local.keys()
    assert {k: v for k, v in cluster.items() if k not in PER_INSTANCE} == {
        k: v for k, v in local.items() if k not in PER_INSTANCE
    }
    assert cluster["iceberg.rest-catalog.uri"] == rest_catalog_url(OWNER)
    assert cluster["s3.endpoint"] == s3_endpoint(OWNER, spec)
    # the keys come from the pod's environment, filled from the credentials Secret
    assert cluster["s3.aws-access-key"] == "${ENV:S3_ACCESS_KEY}"
    assert cluster["s3.aws-secret-key"] == "${ENV:S3_SECRET_KEY}"
    assert TrinoSettings().catalog == CATALOG


def test_the_rest_catalog_serves_the_metadata_the_flink_job_publishes() -> None:
    spec = defaulted(CASES["example"])
    command = rest_catalog_command(OWNER, spec)
    assert REST_SERVER_CLASS == SERVER_CLASS
    assert command[command.index("--warehouse") + 1] == iceberg_warehouse(spec)
    assert iceberg_warehouse(spec) == iceberg_location(f"s3://{spec.lakehouse.bucket}/warehouse")
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(OWNER, spec)}
    flink = objects[("FlinkDeployment", "demo-flink")]
    assert f"s3://{spec.lakehouse.bucket}/warehouse" in str(flink)
    config = objects[("ConfigMap", "demo-trino")]["data"][f"{CATALOG}.properties"]
    assert "S3_SECRET_KEY}" in config
    assert "secret" not in config.replace("${ENV:S3_SECRET_KEY}", "").replace("secret-key", "")
    policy = objects[("NetworkPolicy", "demo-trino-catalog")]["spec"]
    (rule,) = policy["ingress"]
    selector = rule["from"][0]["podSelector"]["matchExpressions"][0]
    assert selector["values"] == ["trino-coordinator", "trino-worker"]
