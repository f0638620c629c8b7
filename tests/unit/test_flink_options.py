"""The Flink job's options: string literals in its SQL stay one value whatever they contain."""

from __future__ import annotations

import pytest

from tests.harness.flink import load_flink_module

pytestmark = pytest.mark.unit

options = load_flink_module("streampulse_flink/options.py", "streampulse_flink_options")


def test_a_secret_with_quotes_stays_one_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "a'b'',c) WITH ('x' = 'y"
    monkeypatch.setenv("STREAMPULSE_PAIMON__S3_SECRET_KEY", secret)
    opts = options.JobOptions(warehouse="s3://bucket/warehouse", s3_access_key="it's")
    sql = opts.catalog_sql("paimon")
    assert "'s3.secret-key' = 'a''b'''',c) WITH (''x'' = ''y'" in sql
    assert "'s3.access-key' = 'it''s'" in sql
    # every quote of the statement is paired: the literal ends where it should
    body = sql[sql.index("(") + 1 : sql.rindex(")")]
    assert body.replace("''", "").count("'") % 2 == 0


def test_s3_options_are_shared_by_the_catalog_and_the_file_system(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMPULSE_PAIMON__S3_SECRET_KEY", "s'cret")
    opts = options.JobOptions(
        warehouse="/local", s3_endpoint="http://127.0.0.1:9000", s3_access_key="key"
    )
    assert opts.s3_options() == {
        "s3.access-key": "key",
        "s3.secret-key": "s'cret",
        "s3.path.style.access": "true",
        "s3.directory.marker.retention": "keep",
        "s3.endpoint": "http://127.0.0.1:9000",
    }
    assert "s3." not in opts.catalog_sql("paimon")  # a local warehouse: none in its catalog
    monkeypatch.delenv("STREAMPULSE_PAIMON__S3_SECRET_KEY")
    keyless = options.JobOptions(warehouse="s3://bucket/w").s3_options()
    assert "s3.secret-key" not in keyless  # the default credential chain, not an empty key
    assert "s3.access-key" not in keyless
