"""The model server on tiny locally built BERT models: export parity, int8 agreement, spans,
concurrency through real HTTP, and the ``streampulse serve-models`` process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
import torch
import transformers
from aiohttp import web

from streampulse.local import ports
from streampulse.serving.app import build_app
from streampulse.serving.manifests import read_manifest, sha256_of
from streampulse.serving.models import ServedModel
from streampulse.serving.samples import SAMPLE_POSTS
from streampulse.serving.sessions import OnnxModel
from streampulse.settings import ServingSettings, Settings
from tests.harness.processes import ManagedProcess
from tests.harness.tiny_models import NER_LABELS, TinyModels, build_tiny_models

pytestmark = pytest.mark.integration

HOSTILE = [
    "Marie Curie 🧪 visited 東京 and 北京 👨\u200d👩\u200d👧 today!",
    "مرحبا Paris שלום 😀😀 ok",
    "\x00\x07 control \u202eRTL\u202c 🇵🇹 flags",
    "",
    "a" * 2000,
]


@pytest.fixture(scope="module")
def tiny() -> TinyModels:
    return build_tiny_models(Settings().cache_dir)


def serving_settings(tiny: TinyModels, **updates: Any) -> ServingSettings:
    return ServingSettings(model_dirs=tiny.dirs).model_copy(update=updates)


@pytest.mark.parametrize("name", ["toxicity", "sentiment", "ner"])
def test_exported_onnx_matches_pytorch_and_int8_agrees(tiny: TinyModels, name: str) -> None:
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine
    directory = getattr(tiny, name)
    manifest = read_manifest(directory)
    report = orjson.loads((directory / "parity.json").read_bytes())
    assert report["fp32_max_abs_diff"] <= 1e-4
    assert report["int8_label_agreement"] >= 0.98
    assert manifest.files.model_int8 is not None

    texts = [*SAMPLE_POSTS, *HOSTILE, "Ada Lovelace met Marie Curie in Paris."]
    settings = serving_settings(tiny)
    fp32 = OnnxModel.load(directory, settings, quantized=False)
    int8 = OnnxModel.load(directory, settings, quantized=True)
    auto = (
        transformers.AutoModelForTokenClassification
        if manifest.task == "token_classification"
        else transformers.AutoModelForSequenceClassification
    )
    reference = auto.from_pretrained(tiny.sources / name, attn_implementation="eager").eval()
    agree = total = 0
    for text in texts:  # one at a time: no padding, so every position is real
        feeds = fp32.feeds(fp32.encode([text]))
        with torch.no_grad():
            expected = reference(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
        got = fp32.logits(feeds)
        assert np.abs(expected.numpy() - got).max() <= 1e-4
        quantized = int8.logits(feeds)
        if manifest.task == "multi_label_classification":
            same = (got > 0) == (quantized > 0)
        else:
            same = got.argmax(-1) == quantized.argmax(-1)
        agree += int(same.sum())
        total += same.size
    assert agree / total >= 0.98


def test_model_directory_describes_itself(tiny: TinyModels) -> None:
    manifest = read_manifest(tiny.ner)
    assert manifest.task == "token_classification"
    assert manifest.labels == NER_LABELS
    assert manifest.source.id == str(tiny.sources / "ner")
    assert (tiny.ner / "tokenizer.json").is_file()
    for file, checksum in manifest.checksums.items():
        assert sha256_of(tiny.ner / file) == checksum
    assert read_manifest(tiny.toxicity).task == "multi_label_classification"
    assert read_manifest(tiny.sentiment).task == "single_label_classification"


def test_entity_spans_are_exact_slices_of_hostile_text(tiny: TinyModels) -> None:
    model = OnnxModel.load(tiny.ner, serving_settings(tiny))
    results = model.predict(HOSTILE)
    assert len(results) == len(HOSTILE)
    seen = 0
    for text, result in zip(HOSTILE, results, strict=True):
        for entity in result["entities"]:  # type: ignore[typeddict-item]
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] in {"PER", "LOC", "ORG"}
            seen += 1
    assert seen > 0
    assert results[3] == {"entities": []}


@pytest.fixture
def free_port() -> int:
    return ports.free_port()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _wait_ready(session: aiohttp.ClientSession, base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, "server never became ready"
        await asyncio.sleep(0.05)


def test_concurrent_callers_over_http_get_their_own_results(tiny: TinyModels) -> None:
    # fp32: dynamic int8 quantizes activations with one scale per batch, so int8 scores move by
    # ~1e-3 with a text's batch-mates; fp32 results must not depend on them at all.
    settings = serving_settings(tiny, max_wait_ms=5.0, quantized=False)
    models: dict[str, ServedModel] = {d.name: OnnxModel.load(d, settings) for d in tiny.dirs}
    texts = [*SAMPLE_POSTS, *HOSTILE]
    requests = [
        (name, [texts[(i * 7 + j) % len(texts)] for j in range(1 + i % 4)])
        for i in range(90)
        for name in (("toxicity", "sentiment", "ner")[i % 3],)
    ]

    async def scenario() -> list[Any]:
        runner, base = await _serve(build_app(models, settings))
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(session, base)

                async def call(name: str, inputs: list[str]) -> Any:
                    url = f"{base}/v1/models/{name}:predict"
                    async with session.post(url, json={"inputs": inputs}) as response:
                        assert response.status == 200, await response.text()
                        return await response.json()

                answers = await asyncio.gather(*(call(n, t) for n, t in requests))
                async with session.get(f"{base}/metrics") as response:
                    metrics = await response.text()
        finally:
            await runner.cleanup()
        assert 'streampulse_serving_batch_size_bucket{le="1.0",model="ner"}' in metrics
        return answers

    answers = asyncio.run(scenario())
    for (name, inputs), answer in zip(requests, answers, strict=True):
        assert answer["model"] == name
        expected = models[name].predict(inputs)  # alone, in-process
        assert len(answer["outputs"]) == len(inputs)
        for got, want in zip(answer["outputs"], expected, strict=True):
            if name == "ner":
                assert [(e["start"], e["end"], e["label"]) for e in got["entities"]] == [
                    (e["start"], e["end"], e["label"])
                    for e in want["entities"]  # type: ignore[typeddict-item]
                ]
            else:
                assert got["label"] == want["label"]  # type: ignore[typeddict-item]
                for label, score in want["scores"].items():  # type: ignore[typeddict-item]
                    assert got["scores"][label] == pytest.approx(score, abs=1e-4)


def test_overload_over_http_answers_503_with_retry_after_and_recovers(tiny: TinyModels) -> None:
    settings = serving_settings(tiny, max_queue_texts=16, max_texts_per_request=8)
    models: dict[str, ServedModel] = {"ner": OnnxModel.load(tiny.ner, settings)}
    inputs = [HOSTILE[0]] * 8

    async def scenario() -> None:
        runner, base = await _serve(build_app(models, settings))
        url = f"{base}/v1/models/ner:predict"
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(session, base)

                async def call() -> tuple[int, str | None, Any]:
                    async with session.post(url, json={"inputs": inputs}) as response:
                        return (
                            response.status,
                            response.headers.get("Retry-After"),
                            (await response.json()),
                        )

                answers = await asyncio.gather(*(call() for _ in range(150)))
                statuses = [status for status, _, _ in answers]
                assert set(statuses) == {200, 503}
                for status, retry_after, body in answers:
                    if status == 503:
                        assert retry_after is not None
                        assert int(retry_after) >= 1
                        assert body["error"]["code"] == "overloaded"
                    else:
                        assert len(body["outputs"]) == 8
                deadline = time.monotonic() + 30
                while (await call())[0] != 200:  # the queue drains: the server recovers
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.fixture
def server_process(tiny: TinyModels, free_port: int, tmp_path: Path) -> Iterator[str]:
    env = {
        "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(d) for d in tiny.dirs]).decode(),
        "STREAMPULSE_SERVING__PORT": str(free_port),
        "STREAMPULSE_SERVING__MAX_TEXTS_PER_REQUEST": "8",
    }
    process = ManagedProcess.streampulse(["serve-models"], env, tmp_path / "serve.log")
    try:
        process.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=120)
        yield f"http://127.0.0.1:{free_port}"
    finally:
        process.stop()
    assert process.process.returncode == 0, process.output()[-3000:]


def test_serve_models_command(server_process: str) -> None:
    base = server_process

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, base)
            async with session.get(f"{base}/v1/models") as response:
                listing = await response.json()
            assert sorted(m["name"] for m in listing["models"]) == ["ner", "sentiment", "toxicity"]
            assert all(m["backend"] == "onnxruntime" for m in listing["models"])
            url = f"{base}/v1/models/toxicity:predict"
            async with session.post(url, json={"inputs": ["hello", "world"]}) as response:
                body = await response.json()
                assert response.status == 200
                assert len(body["outputs"]) == 2
                assert set(body["outputs"][0]["scores"]) == {"toxic", "insult", "threat"}
            async with session.post(url, json={"inputs": ["x"] * 9}) as response:
                assert response.status == 413
                assert "at most 8" in (await response.json())["error"]["message"]
            async with session.post(url, data=b"{") as response:
                assert response.status == 400

    asyncio.run(scenario())


def test_models_export_command_writes_a_served_directory(tiny: TinyModels, tmp_path: Path) -> None:
    out = tmp_path / "exported" / "sentiment"
    process = ManagedProcess.streampulse(
        [
            "models",
            "export",
            str(tiny.sources / "sentiment"),
            "--out",
            str(out),
            "--name",
            "sentiment",
            "--max-length",
            "32",
        ],
        {},
        tmp_path / "export.log",
    )
    assert process.wait(timeout_s=300) == 0, process.output()[-3000:]
    process.stop()
    assert "exported sentiment@" in process.output()
    manifest = read_manifest(out)
    assert manifest.task == "single_label_classification"
    assert manifest.max_length == 32
    assert manifest.source.id == str(tiny.sources / "sentiment")
    report = orjson.loads((out / "parity.json").read_bytes())
    assert report["fp32_max_abs_diff"] <= 1e-4
    assert report["fused_operators"].get("Attention") == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.int8.onnx",
        "model.onnx",
        "parity.json",
        "tokenizer.json",
    ]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    model = OnnxModel.load(out, ServingSettings())
    [result] = model.predict(["a post to score"])
    assert set(result["scores"]) == {"negative", "neutral", "positive"}  # type: ignore[typeddict-item]


def test_export_of_a_missing_source_fails_clearly(tmp_path: Path) -> None:
    process = ManagedProcess.streampulse(
        [
            "models",
            "export",
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "o"),
            "--name",
            "x",
        ],
        {},
        tmp_path / "export.log",
    )
    assert process.wait(timeout_s=300) != 0
    process.stop()
    assert "cannot load" in process.output()
    assert not (tmp_path / "o").exists()


def test_serve_models_without_directories_serves_the_offline_defaults(
    free_port: int, tmp_path: Path
) -> None:
    env = {"STREAMPULSE_SERVING__PORT": str(free_port)}
    process = ManagedProcess.streampulse(["serve-models"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{free_port}"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, base, timeout_s=120)
            async with session.get(f"{base}/v1/models") as response:
                listing = await response.json()
            assert {m["name"]: m["backend"] for m in listing["models"]} == {
                "toxicity": "offline",
                "sentiment": "offline",
                "ner": "offline",
            }
            texts = ["you are a pathetic idiot", "What a wonderful day with friends 😀"]
            async with session.post(
                f"{base}/v1/models/toxicity:predict", json={"inputs": texts}
            ) as response:
                toxic = [o["score"] for o in (await response.json())["outputs"]]
            assert toxic[0] > 0.5 > toxic[1]
            async with session.post(
                f"{base}/v1/models/sentiment:predict", json={"inputs": texts}
            ) as response:
                labels = [o["label"] for o in (await response.json())["outputs"]]
            assert labels == ["negative", "positive"]
            async with session.post(
                f"{base}/v1/models/ner:predict", json={"inputs": ["hi @bob.test #日本"]}
            ) as response:
                [entities] = (await response.json())["outputs"]
            assert [e["text"] for e in entities["entities"]] == ["@bob.test", "#日本"]

    try:
        process.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=120)
        asyncio.run(scenario())
    finally:
        process.stop()
    assert process.process.returncode == 0, process.output()[-3000:]
