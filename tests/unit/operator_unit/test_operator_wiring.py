"""What the rendered pods tell the processes, read back the way the processes read it: the
enrich worker's model URLs and the published routes reach real handlers of the model server,
the Flink job resolves its options from its pod template, and every StreamPulse process builds
its settings from its container's environment with telemetry on and endpoints reachable."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request

from streampulse.enrich.gateway import ModelGateway
from streampulse.serving.app import build_app
from streampulse.settings import ServingSettings, Settings
from streampulse_operator.manifests import render
from tests.harness.flink import load_flink_module
from tests.unit.operator_unit.cases import OWNER, defaulted
from tests.unit.serving.fakes import EchoModel

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
options = load_flink_module("streampulse_flink/options.py", "streampulse_flink_options")
SECRET_REF = "<secret {name}/{key}>"
SPEC: dict[str, Any] = {
    "flink": {"parallelism": 3, "checkpointIntervalSeconds": 45},
    "observability": {"otlpEndpoint": "http://collector.observability.svc:4318"},
    "gateway": {"gatewayName": "public", "gatewayNamespace": "gateways"},
}


def objects(spec: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    rendered = render(OWNER, defaulted(json.loads(json.dumps(spec or SPEC))))
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered}


def container_env(
    container: dict[str, Any], config_maps: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it; Secret values as placeholders."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = SECRET_REF.format(**ref)
    return env


@contextmanager
def environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[None]:
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("STREAMPULSE_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        yield


# -- the model gateway ----------------------------------------------------------------------


def model_server_routes() -> Any:
    settings = ServingSettings()
    return build_app({m: EchoModel(m) for m in ("toxicity", "ner", "sentiment")}, settings)


def resolves_to_predict(app: Any, method: str, path: str, model: str) -> bool:
    match = asyncio.run(app.router.resolve(make_mocked_request(method, path, app=app)))
    return bool(
        match.http_exception is None
        and match.handler.__name__ == "_predict"
        and match.get("name") == model
    )


def test_every_published_route_reaches_a_model_server_handler() -> None:
    found = objects()
    routes = [o for key, o in found.items() if key[0] == "HTTPRoute"]
    assert len(routes) == 3
    app = model_server_routes()
    for route in routes:
        (rule,) = route["spec"]["rules"]
        (backend,) = rule["backendRefs"]
        service = found[("Service", backend["name"])]
        ports = {p["port"]: p for p in service["spec"]["ports"]}
        assert ports[backend["port"]]["targetPort"] == "http"
        deployment = found[("Deployment", backend["name"])]
        model = deployment["metadata"]["labels"]["app.kubernetes.io/component"].removeprefix(
            "model-"
        )
        for match in rule["matches"]:
            assert match["path"]["type"] == "Exact"
            assert resolves_to_predict(app, match["method"], match["path"]["value"], model)
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "public",
                "namespace": "gateways",
            }
        ]


def test_enrich_calls_each_models_service_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    found = objects()
    config = found[("ConfigMap", "demo-enrich")]["data"]
    deployment = found[("Deployment", "demo-enrich")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    with environment(monkeypatch, container_env(container, {"demo-enrich": config})):
        settings = Settings()
    app = model_server_routes()
    called: list[str] = []

    class Recorder:
        async def post(self, url: str, **_: Any) -> Any:
            called.append(url)
            raise RuntimeError("recorded")

    gateway = ModelGateway(settings.enrich, client=Recorder())  # type: ignore[arg-type]
    for model in settings.enrich.models:
        with pytest.raises(RuntimeError, match="recorded"):
            asyncio.run(gateway.predict(model, ["hello"]))
    assert len(called) == 3
    for model, url in zip(settings.enrich.models, called, strict=True):
        parts = urlsplit(url)
        host, namespace, svc = (parts.hostname or "").split(".")[:3]
        assert (namespace, svc) == (OWNER.namespace, "svc")
        service = found[("Service", host)]
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}
        assert resolves_to_predict(app, "POST", parts.path, model)
        policy = found[("NetworkPolicy", "demo-models")]["spec"]
        peers = [p for rule in policy["ingress"] for p in rule["from"]]
        assert {"podSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}} in (
            peers
        )


# -- the Flink job ---------------------------------------------------------------------------


def test_the_flink_job_resolves_its_options_from_the_pod_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = objects()
    flink = found[("FlinkDeployment", "demo-flink")]["spec"]
    (container,) = flink["podTemplate"]["spec"]["containers"]
    env = container_env(container, {})
    args = flink["job"]["args"]
    assert args[:2] == ["-pym", "streampulse_flink.job"]
    with environment(monkeypatch, env):
        opts = options.JobOptions.from_argv(args[2:])
        catalog = opts.catalog_sql("paimon")
    assert opts.warehouse == "s3://streampulse/warehouse"
    assert opts.s3_endpoint == "http://demo-minio.analytics.svc:9000"
    assert opts.s3_access_key == "<secret demo-minio-credentials/accessKey>"
    assert "'s3.secret-key' = '<secret demo-minio-credentials/secretKey>'" in catalog
    assert "'s3.endpoint' = 'http://demo-minio.analytics.svc:9000'" in catalog
    assert opts.parallelism == 3 == flink["job"]["parallelism"]
    assert opts.checkpoint_interval_ms == 45_000
    assert flink["flinkConfiguration"]["execution.checkpointing.interval"] == "45s"
    assert opts.bootstrap_servers == "demo-kafka-bootstrap.analytics.svc:9092"


def test_the_flink_image_holds_one_python_driver_jar_named_as_the_job_jar(tmp_path: Path) -> None:
    """Flink's job manager looks for ``flink-python*`` under ``opt/`` and refuses a Python job
    when it finds more than one ("Found 2 flink-python jar"): the image's steps that place the
    PythonDriver jar, run on a copy of the base's ``opt/``, leave exactly the jarURI's file."""
    jar_uri = objects()[("FlinkDeployment", "demo-flink")]["spec"]["job"]["jarURI"]
    assert jar_uri.startswith("local:///opt/flink/opt/")
    dockerfile = (REPO / "flink" / "Dockerfile").read_text()
    version = re.search(r"^ARG FLINK_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert version is not None
    runtime = dockerfile.rsplit("\nFROM ", 1)[1]
    steps = [
        line.strip().removesuffix("\\").strip().rstrip(";")
        for line in runtime.splitlines()
        if "flink-python" in line and not line.strip().startswith(("#", "ARG", "FROM"))
    ]
    assert steps, "the runtime stage places no flink-python jar"
    opt = tmp_path / "opt"
    opt.mkdir()
    for name in (f"flink-python-{version.group(1)}.jar", "flink-sql-client-x.jar"):
        (opt / name).write_bytes(b"jar")
    script = "; ".join(steps).replace("/opt/flink/", f"{tmp_path}/")
    subprocess.run(["bash", "-euc", script], env={"FLINK_VERSION": version.group(1),
                   "PATH": os.environ["PATH"]}, check=True)  # fmt: skip
    found = sorted(p.name for p in opt.iterdir() if p.name.startswith("flink-python"))
    assert found == [jar_uri.rsplit("/", 1)[1]]


# -- every StreamPulse process ----------------------------------------------------------------


def streampulse_containers() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    found = objects()
    config_maps = {name: o["data"] for (kind, name), o in found.items() if kind == "ConfigMap"}
    out = []
    for (kind, name), obj in found.items():
        if kind != "Deployment" or name.startswith("demo-trino"):
            continue
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        out.append((name, container, container_env(container, config_maps)))
    return out


def test_every_process_exports_traces_and_serves_reachable_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processes = streampulse_containers()
    assert {name for name, _, _ in processes} == {
        "demo-ingest",
        "demo-enrich",
        "demo-model-toxicity",
        "demo-model-ner",
        "demo-model-sentiment",
    }
    for name, container, env in processes:
        with environment(monkeypatch, env):
            settings = Settings()
        assert settings.telemetry.otlp_endpoint == SPEC["observability"]["otlpEndpoint"], name
        assert settings.bind_host == "0.0.0.0", name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert settings.metrics_port == ports["metrics"], name
        probes = [container.get("readinessProbe"), container.get("livenessProbe")]
        assert all(probes), name
        for probe in probes:
            port = ports[probe["httpGet"]["port"]]
            if name.startswith("demo-model"):
                assert settings.serving.host == "0.0.0.0"
                assert port == settings.serving.port
            else:
                assert port == settings.health_port != 0, name
