"""Every image of the repository (Trino aside) builds here and starts as the pods run it.

The images are built from this checkout by ``tests.harness.images`` (offline, local bases, staged
inputs; cached layers make a second run quick) and run as the operator's pods run them: their
uid, a read-only root filesystem, ``/tmp`` writable, no capabilities, no privilege escalation.
Each entrypoint is checked for an answer: the operator's health endpoint against a real API
server, the workers' CLI and replay server, the model server's readiness and predictions from the
baked models, Flink's CLI and a PyFlink job.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard
from websockets.sync.client import connect

from streampulse.local.ports import free_port
from streampulse.serving.manifests import read_manifest
from streampulse.serving.sessions import OnnxModel
from streampulse.settings import ServingSettings
from streampulse_operator.manifests.common import RUNTIME_UID
from streampulse_operator.manifests.flink import FLINK_UID
from streampulse_operator.manifests.trino import TRINO_UID
from streampulse_operator.spec import Flink, Image, Trino
from tests.harness.cluster.common import default_cache_dir
from tests.harness.cluster.engine import Engine, ensure_engine
from tests.harness.images import IMAGES, ImageResult, Stager, build_images
from tests.harness.images.contexts import source_files
from tests.harness.images.running import http, run_once, serving, wait_for_http
from tests.harness.images.staging import dockerfile_arg
from tests.harness.kube import ControlPlane, ensure_binaries

pytestmark = [pytest.mark.system, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
EXPECTED_UID = {"operator": RUNTIME_UID, "workers": RUNTIME_UID, "models": RUNTIME_UID}
EXPECTED_UID["flink"] = FLINK_UID
EXPECTED_UID["trino"] = TRINO_UID
USER_NAME = {"flink": "flink", "trino": "trino"}  # the others: streampulse
TEXTS = [
    "I love this, what a wonderful day in Paris!",
    "You are a terrible, stupid person.",
    "Marie Curie worked at the Sorbonne.",
    "\x00 control \u202eRTL\u202c 🇵🇹 flags",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return ensure_engine()


@pytest.fixture(scope="module")
def built(engine: Engine) -> dict[str, ImageResult]:
    return build_images(default_cache_dir())


@pytest.fixture(scope="module")
def stager() -> Stager:
    return Stager(repo=REPO, cache_dir=default_cache_dir())


def tag(built: dict[str, ImageResult], name: str) -> str:
    return built[name].tag


def test_images_are_tagged_as_the_chart_and_the_spec_expect(
    built: dict[str, ImageResult],
) -> None:
    chart = yaml.safe_load((REPO / "charts/streampulse-operator/Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts/streampulse-operator/values.yaml").read_text())
    assert tag(built, "operator") == f"{values['image']['repository']}:{chart['appVersion']}"
    assert tag(built, "workers") == Image().reference
    assert tag(built, "models") == Image().models_reference
    assert tag(built, "flink") == Flink().image
    assert tag(built, "trino") == Trino().image
    assert set(built) == set(IMAGES)
    for result in built.values():
        assert result.size_bytes > 0
        assert result.seconds > 0


def test_build_context_holds_what_dockerignore_allows() -> None:
    files = set(source_files(REPO))
    assert {"workers/pyproject.toml", "operator/pyproject.toml", "flink/environment.py"} <= files
    assert "flink/requirements.txt" in files
    for left_out in ("tests/", "docs/", "charts/", "crds/", ".git/", ".github/"):
        assert not any(name.startswith(left_out) for name in files), left_out
    assert not any("__pycache__" in name or "/.venv/" in name for name in files)
    # every image's Dockerfile is in it: the harness builds from that context, as CI does
    assert {recipe.dockerfile for recipe in IMAGES.values()} <= files


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_runs_as_the_uid_the_manifests_expect(
    engine: Engine, built: dict[str, ImageResult], name: str
) -> None:
    assert IMAGES[name].uid == EXPECTED_UID[name]
    # the image's own user (no --user), through its own entrypoint where that passes commands on;
    # the uid has a passwd entry (libraries look the user up: kopf's identity does)
    script = ["-c", "id -u && id -un"]
    own = (
        run_once(engine, tag(built, name), ["sh", *script], user=None)
        if name == "flink"
        else run_once(engine, tag(built, name), script, user=None, entrypoint="sh")
    )
    assert own.returncode == 0, own.stderr
    uid, user = own.stdout.split()
    assert int(uid) == EXPECTED_UID[name]
    assert user == USER_NAME.get(name, "streampulse")


# -- operator ---------------------------------------------------------------------------------


def portable_kubeconfig(plane: ControlPlane, target: Path) -> Path:
    """The plane's kubeconfig with its certificates inlined, readable by the operator's uid."""
    config: dict[str, Any] = yaml.safe_load(plane.kubeconfig.read_text())
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in config[section]:
            body = entry[key]
            for field in ("certificate-authority", "client-certificate", "client-key"):
                if field in body:
                    data = Path(body.pop(field)).read_bytes()
                    body[f"{field}-data"] = base64.b64encode(data).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o644)
    return target


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane(ensure_binaries(), crds_dir=REPO / "crds") as running:
        yield running


def test_operator_answers_health_against_an_api_server(
    engine: Engine, built: dict[str, ImageResult], plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = portable_kubeconfig(plane, tmp_path / "kubeconfig")
    port = free_port()
    env = {
        "KUBECONFIG": "/etc/streampulse/kubeconfig",
        "STREAMPULSE_OPERATOR_HEALTH_HOST": "127.0.0.1",
        "STREAMPULSE_OPERATOR_HEALTH_PORT": str(port),
    }
    with serving(
        engine,
        tag(built, "operator"),
        user=RUNTIME_UID,
        env=env,
        mounts={kubeconfig: "/etc/streampulse/kubeconfig"},
    ) as operator:
        answer = wait_for_http(f"http://127.0.0.1:{port}/healthz", operator, timeout_s=120)
        assert operator.uid() == RUNTIME_UID
        logs = operator.logs()
    assert answer.status == 200
    # JSON logs, as the chart sets them
    first = next(line for line in logs.splitlines() if line.startswith("{"))
    assert json.loads(first)["level"] in {"DEBUG", "INFO", "WARNING"}


# -- workers ----------------------------------------------------------------------------------


def test_workers_cli_answers_help(engine: Engine, built: dict[str, ImageResult]) -> None:
    proc = run_once(engine, tag(built, "workers"), ["--help"], user=RUNTIME_UID)
    assert proc.returncode == 0, proc.stderr
    for command in ("ingest", "enrich", "replay", "serve-models"):
        assert command in proc.stdout


def test_workers_carry_the_pinned_jetstream_dictionary(
    engine: Engine, built: dict[str, ImageResult]
) -> None:
    code = (
        "import hashlib, os, pathlib; "
        "print(hashlib.sha256(pathlib.Path(os.environ['STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY'])"
        ".read_bytes()).hexdigest())"
    )
    proc = run_once(
        engine, tag(built, "workers"), ["-c", code], user=RUNTIME_UID, entrypoint="python"
    )
    assert proc.returncode == 0, proc.stderr
    pinned = dockerfile_arg(REPO / "workers" / "Dockerfile", "ZSTD_DICTIONARY_SHA256")
    assert proc.stdout.strip() == pinned


def jetstream_data() -> Path:
    configured = os.environ.get("STREAMPULSE_REPLAY__DATA_DIR")
    data = Path(configured) if configured else REPO.parent / "shared" / "data" / "jetstream"
    if not (data / "zstd_dictionary_v1.bin").is_file():
        pytest.fail(f"no Jetstream data at {data}: set STREAMPULSE_REPLAY__DATA_DIR")
    return data


def test_workers_replay_serves_a_compressed_subscribe_stream(
    engine: Engine, built: dict[str, ImageResult]
) -> None:
    data = jetstream_data()
    port = free_port()
    env = {
        "STREAMPULSE_REPLAY__HOST": "127.0.0.1",
        "STREAMPULSE_REPLAY__PORT": str(port),
        "STREAMPULSE_REPLAY__DATA_DIR": "/data",
        "STREAMPULSE_REPLAY__STREAM": "recorded",
        "STREAMPULSE_REPLAY__RATE": "max",
    }
    with serving(
        engine, tag(built, "workers"), ["replay"], user=RUNTIME_UID, env=env, mounts={data: "/data"}
    ) as replay:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", replay, timeout_s=120)
        dictionary = zstandard.ZstdCompressionDict((data / "zstd_dictionary_v1.bin").read_bytes())
        decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)
        url = f"ws://127.0.0.1:{port}/subscribe?compress=true"
        with connect(url, open_timeout=30, close_timeout=5) as socket:
            frames = [socket.recv(timeout=30) for _ in range(5)]
        assert replay.uid() == RUNTIME_UID
    binary = [frame for frame in frames if isinstance(frame, bytes)]
    assert len(binary) == 5, "compressed events come as binary frames"
    events = [json.loads(decompressor.decompress(frame)) for frame in binary]
    assert len(events) == 5
    for event in events:
        assert {"did", "time_us", "kind"} <= event.keys()


# -- models -----------------------------------------------------------------------------------


def close(got: Any, expected: Any) -> bool:
    """Equal JSON values, floats within 1e-3 (ONNX Runtime's threads may round differently)."""
    if isinstance(expected, float) or isinstance(got, float):
        return math.isclose(float(got), float(expected), abs_tol=1e-3)
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(close(got[k], expected[k]) for k in expected)
    if isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(map(close, got, expected))
    return bool(got == expected)


def test_model_server_predicts_with_the_baked_model_as_the_operator_runs_it(
    engine: Engine, built: dict[str, ImageResult], stager: Stager
) -> None:
    staged = stager.models() / "toxicity"
    port = free_port()
    env = {  # what the operator's model Deployment sets (manifests/models.py), on loopback
        "STREAMPULSE_SERVING__HOST": "127.0.0.1",
        "STREAMPULSE_SERVING__PORT": str(port),
        "STREAMPULSE_SERVING__MODEL_DIRS": json.dumps(["/models/toxicity"]),
        "STREAMPULSE_SERVING__MAX_BATCH_SIZE": "32",
        "STREAMPULSE_LOG_FORMAT": "json",
    }
    with serving(
        engine, tag(built, "models"), ["serve-models"], user=RUNTIME_UID, env=env
    ) as server:
        base = f"http://127.0.0.1:{port}"
        ready = wait_for_http(f"{base}/readyz", server, timeout_s=120).json()
        predicted = http(
            f"{base}/v1/models/toxicity:predict", json.dumps({"inputs": TEXTS}).encode()
        )
        refused = http(f"{base}/v1/models/toxicity:predict", b'{"inputs": "not a list"')
        unknown = http(
            f"{base}/v1/models/sentiment:predict", json.dumps({"inputs": ["a"]}).encode()
        )
        assert server.uid() == RUNTIME_UID
    assert ready == {"status": "ready", "models": ["toxicity"]}
    assert predicted.status == 200, predicted.body
    answer = predicted.json()
    assert isinstance(answer, dict)
    assert answer["model"] == "toxicity"
    assert answer["version"] == read_manifest(staged).version
    expected = OnnxModel.load(staged, ServingSettings(model_dirs=(staged,))).predict(TEXTS)
    assert close(answer["outputs"], json.loads(json.dumps(expected)))
    assert refused.status == 400
    assert unknown.status == 404


def test_model_server_default_command_serves_all_three_models(
    engine: Engine, built: dict[str, ImageResult]
) -> None:
    port = free_port()
    env = {"STREAMPULSE_SERVING__HOST": "127.0.0.1", "STREAMPULSE_SERVING__PORT": str(port)}
    with serving(engine, tag(built, "models"), user=RUNTIME_UID, env=env) as server:
        ready = wait_for_http(f"http://127.0.0.1:{port}/readyz", server, timeout_s=120).json()
        body = json.dumps({"inputs": ["Ada Lovelace lived in London."]}).encode()
        answers = {
            name: http(f"http://127.0.0.1:{port}/v1/models/{name}:predict", body)
            for name in ("toxicity", "ner", "sentiment")
        }
    assert ready == {"status": "ready", "models": ["ner", "sentiment", "toxicity"]}
    for name, answer in answers.items():
        assert answer.status == 200, (name, answer.body)


# -- Flink ------------------------------------------------------------------------------------


def flink_run(engine: Engine, built: dict[str, ImageResult], *args: str) -> str:
    """Run a command through the image's /docker-entrypoint.sh as the Flink pods run; stdout."""
    proc = run_once(engine, tag(built, "flink"), list(args), user=FLINK_UID, timeout_s=300)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.stdout


def test_flink_entrypoint_runs_flink_and_passes_commands_on(
    engine: Engine, built: dict[str, ImageResult], stager: Stager
) -> None:
    version = flink_run(engine, built, "flink", "--version")
    assert f"Version: {stager.flink_version()}" in version
    # native Kubernetes mode's container command: `bash -c 'kubernetes-jobmanager.sh ...'`
    found = flink_run(engine, built, "bash", "-c", "command -v kubernetes-jobmanager.sh")
    assert found.strip() == "/opt/flink/bin/kubernetes-jobmanager.sh"
    usage = flink_run(engine, built, "help")
    assert "jobmanager" in usage


def test_flink_image_has_pyflink_the_job_and_the_connectors(
    engine: Engine, built: dict[str, ImageResult], stager: Stager
) -> None:
    code = (
        "import json, os, pathlib, pyflink.version, streampulse_flink, sys; "
        "flink = pathlib.Path('/opt/flink'); "
        "print(json.dumps({"
        "'pyflink': pyflink.version.__version__, "
        "'python': sys.executable, "
        "'job': streampulse_flink.__file__, "
        "'driver': os.path.realpath(flink / 'opt/flink-python.jar'), "
        "'s3': sorted(p.name for p in (flink / 'plugins/s3-fs-hadoop').iterdir()), "
        "'lib': sorted(p.name for p in (flink / 'lib').iterdir()), "
        "'log': os.path.realpath(flink / 'log')}))"
    )
    found = json.loads(flink_run(engine, built, "python", "-c", code))
    version = stager.flink_version()
    assert found["pyflink"] == version
    assert found["python"] == "/opt/venv/bin/python"
    assert found["job"].startswith("/opt/venv/lib/python3.11/site-packages/streampulse_flink/")
    assert found["driver"] == "/opt/flink/opt/flink-python.jar"  # renamed (jarURI: no version)
    assert len(found["s3"]) == 1
    assert found["s3"][0].startswith("flink-s3-fs-hadoop-")
    staged_jars = sorted(p.name for p in stager.flink_jars().glob("*.jar"))
    assert set(staged_jars) <= set(found["lib"])
    assert f"flink-dist-{version}.jar" in found["lib"]
    assert found["log"] == "/tmp"


def test_flink_image_runs_a_pyflink_job_on_a_read_only_root(
    engine: Engine, built: dict[str, ImageResult]
) -> None:
    code = (
        "from pyflink.table import EnvironmentSettings, TableEnvironment; "
        "t = TableEnvironment.create(EnvironmentSettings.in_batch_mode()); "
        "rows = t.execute_sql('SELECT x * 2 FROM (VALUES (1), (2), (3)) AS v(x)').collect(); "
        "print(sorted(r[0] for r in rows))"
    )
    out = flink_run(engine, built, "python", "-c", code)
    assert out.strip().splitlines()[-1] == "[2, 4, 6]"


def test_build_is_reproducible_from_cache(built: dict[str, ImageResult]) -> None:
    """A second build of an unchanged checkout reuses every layer: the same image, quickly."""
    again = build_images(default_cache_dir(), only=["operator"])["operator"]
    assert again.image_id == built["operator"].image_id
    assert not again.rebuilt
