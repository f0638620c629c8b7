"""Offline schema checks for rendered objects: upstream CRD schemas (made strict: unknown fields
are errors) through jsonschema, core kinds through the Kubernetes OpenAPI (kubernetes-validate),
and structural defaulting of the StreamPulse CRD as the API server does it."""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
STREAMPULSE_CRD = REPO / "crds" / "streampulse.io_streampulses.yaml"
KUBERNETES_VERSION = "1.37.0"


def upstream_crds_dir() -> Path:
    value = os.environ.get("STREAMPULSE_TEST_K8S_CRDS_DIR")
    if not value:
        pytest.fail("STREAMPULSE_TEST_K8S_CRDS_DIR is not set (the Makefile exports it)")
    path = Path(value)
    if not any(path.glob("*.yaml")):
        pytest.fail(f"STREAMPULSE_TEST_K8S_CRDS_DIR={path} holds no CRD manifests")
    return path


JUNCTORS = frozenset({"oneOf", "anyOf", "allOf", "not"})


def strict(schema: Any, *, structural: bool = True) -> Any:
    """An OpenAPI v3 (Kubernetes dialect) schema as JSON Schema, rejecting unknown fields.

    Only the structural part names the fields: the schemas under ``oneOf``/``anyOf``/``allOf``/
    ``not`` only validate values (Kubernetes' structural schema rules), so they reject nothing
    for being unknown."""
    if isinstance(schema, list):
        return [strict(s, structural=structural) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: strict(v, structural=structural and k not in JUNCTORS)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes")
    }
    if "properties" in out:
        out["properties"] = {
            k: strict(v, structural=structural) for k, v in schema["properties"].items()
        }
        if (
            structural
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in out
        ):
            out["additionalProperties"] = False
    if schema.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def crd_schemas(directory: str) -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    out: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                checked = strict(schema)
                for field in ("apiVersion", "kind"):  # some generators leave these out
                    checked["properties"].setdefault(field, {"type": "string"})
                checked["properties"]["metadata"] = {"type": "object"}
                out[(api_version, spec["names"]["kind"])] = jsonschema.Draft7Validator(checked)
    return out


def gateway_api_crds_dir() -> Path:
    value = os.environ.get("STREAMPULSE_TEST_GATEWAY_API_CRDS_DIR")
    if not value or not any(Path(value).glob("*httproutes.yaml")):
        pytest.fail(
            f"STREAMPULSE_TEST_GATEWAY_API_CRDS_DIR={value!r} holds no Gateway API CRDs "
            "(the Makefile exports it; `make kube` fetches them)"
        )
    return Path(value)


def upstream_facts_dir() -> Path:
    """Upstream files that are not CRDs (Strimzi's kafka-versions.yaml)."""
    value = os.environ.get("STREAMPULSE_TEST_UPSTREAM_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail("STREAMPULSE_TEST_UPSTREAM_DIR is not set (the Makefile exports it)")
    return Path(value)


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` does not match its kind's schema (upstream CRD or Kubernetes)."""
    key = (obj["apiVersion"], obj["kind"])
    schemas = {
        **crd_schemas(str(upstream_crds_dir())),
        **crd_schemas(str(gateway_api_crds_dir())),
    }
    if key in schemas:
        schemas[key].validate(obj)
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def streampulse_schema() -> dict[str, Any]:
    crd = yaml.safe_load(STREAMPULSE_CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting, as the API server applies a CRD's defaults."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value
