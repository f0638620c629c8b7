"""The HTTP API with an in-memory model: results, 4xx messages, 503 + Retry-After, readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streampulse.serving.app import build_app
from streampulse.serving.models import ServedModel
from streampulse.settings import ServingSettings

from .fakes import EchoModel

pytestmark = pytest.mark.unit

SETTINGS = ServingSettings(
    max_texts_per_request=4, max_text_chars=50, max_queue_texts=4, max_batch_size=2
)


def run(
    scenario: Callable[[TestClient, EchoModel], Awaitable[None]],
    model: EchoModel | None = None,
    settings: ServingSettings = SETTINGS,
) -> None:
    model = model or EchoModel()

    async def main() -> None:
        models: dict[str, ServedModel] = {model.name: model}
        async with TestClient(TestServer(build_app(models, settings))) as client:
            if model.gate.is_set():
                await until_ready(client)
            await scenario(client, model)

    asyncio.run(main())


async def until_ready(client: TestClient, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/readyz")).status != 200:
        if time.monotonic() > deadline:
            raise AssertionError("never ready")
        await asyncio.sleep(0.01)


def test_predict_answers_one_result_per_input_in_order() -> None:
    async def scenario(client: TestClient, _model: EchoModel) -> None:
        response = await client.post("/v1/models/echo:predict", json={"inputs": ["x", "y", "z"]})
        assert response.status == 200
        body = await response.json()
        assert body["model"] == "echo"
        assert body["version"] == "1"
        assert [o["label"] for o in body["outputs"]] == ["x", "y", "z"]

    run(scenario)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid UTF-8 JSON"),
        (b'{"inputs": ["\xff\xfe"]}', 400, "not valid UTF-8 JSON"),
        (b'{"inputs": ["\\ud800"]}', 400, "not valid UTF-8 JSON"),
        (b'["a"]', 400, "JSON object"),
        (b'{"texts": ["a"]}', 400, '"inputs"'),
        (b'{"inputs": "a"}', 400, "list of strings"),
        (b'{"inputs": []}', 400, "empty"),
        (b'{"inputs": ["a", 3]}', 400, '"inputs"[1] is int'),
        (b'{"inputs": [null]}', 400, "not a string"),
        (b'{"inputs": ["a","b","c","d","e"]}', 413, "at most 4 per request"),
        (orjson.dumps({"inputs": ["ok", "x" * 51]}), 413, '"inputs"[1] has 51 characters'),
        (b"x" * 2_000_000, 413, "too large"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(body: bytes, status: int, needle: str) -> None:
    async def scenario(client: TestClient, model: EchoModel) -> None:
        response = await client.post(
            "/v1/models/echo:predict", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == status
        error = (await response.json())["error"]
        assert needle in error["message"]
        assert error["code"]
        assert model.batches == [] or sum(model.batches) == 4  # only warm-up texts ran
        ok = await client.post("/v1/models/echo:predict", json={"inputs": ["still fine"]})
        assert ok.status == 200

    run(scenario)


def test_hostile_but_valid_text_is_scored() -> None:
    texts = ["\x00\x07 control", "\u202eRTL\u202c", "👨\u200d👩\u200d👧", ""]

    async def scenario(client: TestClient, _model: EchoModel) -> None:
        response = await client.post("/v1/models/echo:predict", json={"inputs": texts})
        assert response.status == 200
        assert [o["label"] for o in (await response.json())["outputs"]] == texts

    run(scenario)


def test_unknown_model_is_404() -> None:
    async def scenario(client: TestClient, _model: EchoModel) -> None:
        response = await client.post("/v1/models/nope:predict", json={"inputs": ["a"]})
        assert response.status == 404
        assert "GET /v1/models" in (await response.json())["error"]["message"]

    run(scenario)


def test_overload_answers_503_with_retry_after_then_recovers() -> None:
    async def scenario(client: TestClient, model: EchoModel) -> None:
        url = "/v1/models/echo:predict"
        held = [
            asyncio.create_task(client.post(url, json={"inputs": [f"{i}a", f"{i}b"]}))
            for i in range(2)
        ]
        deadline = time.monotonic() + 10
        queued = 'streampulse_serving_queued_texts{model="echo"} 4.0'
        while queued not in await (await client.get("/metrics")).text():
            assert time.monotonic() < deadline, "the held requests never filled the queue"
            await asyncio.sleep(0.005)
        response = await client.post(url, json={"inputs": ["extra"]})
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["error"]["code"] == "overloaded"
        model.gate.set()
        for index, task in enumerate(held):
            answer = await task
            assert answer.status == 200
            assert [o["label"] for o in (await answer.json())["outputs"]] == [
                f"{index}a",
                f"{index}b",
            ]
        recovered = await client.post(url, json={"inputs": ["after"]})
        assert recovered.status == 200
        metrics = await (await client.get("/metrics")).text()
        assert 'streampulse_serving_errors_total{kind="overloaded",model="echo"}' in metrics

    run(scenario, EchoModel(open_=False), SETTINGS.model_copy(update={"warmup_batches": 0}))


def test_inference_failure_is_500_and_the_server_goes_on() -> None:
    async def scenario(client: TestClient, _model: EchoModel) -> None:
        url = "/v1/models/echo:predict"
        failed = await client.post(url, json={"inputs": ["boom"]})
        assert failed.status == 500
        assert "exploded" in (await failed.json())["error"]["message"]
        assert (await client.post(url, json={"inputs": ["fine"]})).status == 200

    run(scenario)


def test_ready_only_after_warm_up_and_models_listed() -> None:
    async def scenario(client: TestClient, model: EchoModel) -> None:
        assert (await client.get("/healthz")).status == 200
        deadline = time.monotonic() + 10
        while not model.entered.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        assert (await client.get("/readyz")).status == 503  # warm-up is held at the gate
        model.gate.set()
        await until_ready(client)
        listing = await (await client.get("/v1/models")).json()
        assert listing == {
            "models": [
                {
                    "name": "echo",
                    "version": "1",
                    "task": "single_label_classification",
                    "labels": ["a", "b"],
                    "backend": "fake",
                }
            ]
        }

    run(scenario, EchoModel(open_=False))


def test_metrics_count_requests_batches_and_waits() -> None:
    async def scenario(client: TestClient, _model: EchoModel) -> None:
        url = "/v1/models/echo:predict"
        answers = await asyncio.gather(
            *(client.post(url, json={"inputs": ["m"]}) for _ in range(4))
        )
        assert all(a.status == 200 for a in answers)
        text = await (await client.get("/metrics")).text()
        for name in (
            'streampulse_serving_requests_total{model="echo",status="200"}',
            'streampulse_serving_batch_size_bucket{le="2.0",model="echo"}',
            'streampulse_serving_queue_wait_seconds_count{model="echo"}',
            'streampulse_serving_inference_seconds_count{model="echo"}',
            'streampulse_serving_texts_total{model="echo"}',
        ):
            assert name in text

    run(scenario)


def test_settings_refuse_a_request_limit_larger_than_the_queue() -> None:
    with pytest.raises(ValueError, match="max_texts_per_request must not exceed max_queue_texts"):
        ServingSettings(max_texts_per_request=65, max_queue_texts=64)


def test_errors_are_counted_without_a_label_per_unknown_name() -> None:
    async def scenario(client: TestClient, _model: EchoModel) -> None:
        await client.post("/v1/models/made-up-name:predict", json={"inputs": ["a"]})
        await client.post("/v1/models/echo:predict", data=b"x" * 2_000_000)
        text = await (await client.get("/metrics")).text()
        assert "made-up-name" not in text
        assert 'streampulse_serving_requests_total{model="echo",status="413"}' in text

    run(scenario)
