"""Every rendered object is valid against the upstream CRD schemas (Strimzi, Flink operator,
Prometheus operator) or the Kubernetes OpenAPI; the StreamPulse CRD's defaults are the spec
models' defaults; the example is a valid StreamPulse."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from streampulse_operator.kinds import CHILD_KINDS
from streampulse_operator.manifests import render
from streampulse_operator.spec import StreamPulseSpec
from tests.unit.operator_unit.cases import CASES, EXAMPLE, OWNER, defaulted
from tests.unit.operator_unit.schemas import (
    STREAMPULSE_CRD,
    apply_defaults,
    streampulse_schema,
    strict,
    validate,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_match_their_schemas(case: str) -> None:
    for obj in render(OWNER, defaulted(CASES[case])):
        validate(obj)


def test_schema_check_catches_an_unknown_field() -> None:
    kafka = next(o for o in render(OWNER, defaulted({})) if o["kind"] == "Kafka")
    kafka["spec"]["kafka"]["listenerz"] = []
    with pytest.raises(jsonschema.ValidationError, match="listenerz"):
        validate(kafka)


def test_crd_defaults_equal_the_spec_model_defaults() -> None:
    from_crd = apply_defaults(streampulse_schema()["properties"]["spec"], {})
    assert from_crd == StreamPulseSpec().model_dump(mode="json", exclude_none=True)


def test_example_is_a_valid_streampulse() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    schema = strict(streampulse_schema())
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(apply_defaults(streampulse_schema(), example), schema)


def test_crd_has_status_printer_columns_and_short_name() -> None:
    crd = yaml.safe_load(STREAMPULSE_CRD.read_text())
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Ready", "Kafka", "Flink", "Models", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["sp"]


def _walk(schema: dict[str, Any], path: str = "spec") -> list[str]:
    missing = [] if schema.get("description") or path.endswith("]") else [path]
    for name, sub in (schema.get("properties") or {}).items():
        missing += _walk(sub, f"{path}.{name}")
    if "items" in schema and "properties" in schema["items"]:
        missing += _walk(schema["items"], f"{path}[]")
    return missing


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    assert _walk(streampulse_schema()["properties"]["spec"]) == []


def test_chart_carries_the_crd_and_rbac_for_every_child_kind() -> None:
    chart = STREAMPULSE_CRD.parents[1] / "charts" / "streampulse-operator"
    assert (chart / "crds" / STREAMPULSE_CRD.name).read_text() == STREAMPULSE_CRD.read_text()
    rbac = (chart / "templates" / "rbac.yaml").read_text()
    assert "*" not in rbac
    for kind in CHILD_KINDS:
        assert f'"{kind.plural}"' in rbac, kind
