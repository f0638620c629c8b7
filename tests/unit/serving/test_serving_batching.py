"""Micro-batching: own results in order, coalescing, overload and recovery, failures, cancels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from streampulse.serving.batching import MicroBatcher
from streampulse.serving.errors import InferenceError, Overloaded
from streampulse.serving.tasks import Prediction

from .fakes import EchoModel

pytestmark = pytest.mark.unit


def batcher(model: EchoModel, **overrides: object) -> MicroBatcher[Prediction]:
    options: dict[str, object] = {
        "max_batch_size": 8,
        "max_wait_s": 0.005,
        "max_queue": 256,
        "batching": True,
    }
    options.update(overrides)
    return MicroBatcher[Prediction](model.name, model.predict, **options)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)


def labels(results: list[Prediction]) -> list[str]:
    return [r["label"] for r in results]  # type: ignore[typeddict-item]


def test_concurrent_callers_get_their_own_results_in_order() -> None:
    model = EchoModel()

    async def scenario() -> None:
        b = batcher(model)
        b.start()
        requests = [[f"r{r}-t{t}" for t in range(1 + r % 5)] for r in range(60)]
        results = await asyncio.gather(*(b.submit(texts) for texts in requests))
        await b.stop()
        for texts, result in zip(requests, results, strict=True):
            assert labels(result) == texts
        assert sum(model.batches) == sum(len(t) for t in requests)
        assert max(model.batches) == 8  # coalesced across requests, never above the max
        assert b.queued == 0

    asyncio.run(scenario())


def test_a_lone_request_waits_at_most_max_wait() -> None:
    model = EchoModel()

    async def scenario() -> None:
        b = batcher(model, max_wait_s=0.05, max_batch_size=64)
        b.start()
        started = time.perf_counter()
        assert labels(await asyncio.wait_for(b.submit(["alone"]), timeout=5)) == ["alone"]
        assert time.perf_counter() - started < 2.0
        await b.stop()

    asyncio.run(scenario())


def test_overload_is_refused_with_retry_after_and_recovers() -> None:
    model = EchoModel(open_=False)

    async def scenario() -> None:
        b = batcher(model, max_queue=4, max_batch_size=2)
        b.start()
        first = asyncio.create_task(b.submit(["a", "b"]))
        second = asyncio.create_task(b.submit(["c", "d"]))
        await until(lambda: b.queued == 4)
        with pytest.raises(Overloaded) as refused:
            await b.submit(["e"])
        assert refused.value.retry_after_s >= 1
        assert b.queued == 4  # the refused request took no room
        model.gate.set()
        assert labels(await first) == ["a", "b"]
        assert labels(await second) == ["c", "d"]
        assert labels(await b.submit(["e"])) == ["e"]
        assert b.queued == 0
        await b.stop()

    asyncio.run(scenario())


def test_a_failing_batch_fails_its_callers_only() -> None:
    model = EchoModel()

    async def scenario() -> None:
        b = batcher(model, max_batch_size=1)
        b.start()
        good, bad = await asyncio.gather(
            b.submit(["fine"]), b.submit(["boom"]), return_exceptions=True
        )
        assert labels(good) == ["fine"]  # type: ignore[arg-type]
        assert isinstance(bad, InferenceError)
        assert "exploded" in str(bad)
        assert labels(await b.submit(["after"])) == ["after"]
        await b.stop()

    asyncio.run(scenario())


def test_a_caller_that_goes_away_frees_its_place() -> None:
    model = EchoModel(open_=False)

    async def scenario() -> None:
        b = batcher(model, max_batch_size=1)
        b.start()
        running = asyncio.create_task(b.submit(["held"]))
        await until(model.entered.is_set)
        abandoned = asyncio.create_task(b.submit(["gone", "away"]))
        await until(lambda: b.queued == 3)
        abandoned.cancel()
        model.gate.set()
        assert labels(await running) == ["held"]
        await until(lambda: b.queued == 0)
        assert sum(model.batches) == 1  # only "held" ran
        await b.stop()

    asyncio.run(scenario())


def test_batching_off_runs_each_request_alone() -> None:
    model = EchoModel()

    async def scenario() -> None:
        b = batcher(model, batching=False)
        b.start()
        requests = [[f"{r}-{t}" for t in range(r % 3 + 1)] for r in range(20)]
        results = await asyncio.gather(*(b.submit(texts) for texts in requests))
        for texts, result in zip(requests, results, strict=True):
            assert labels(result) == texts
        assert sorted(model.batches) == sorted(len(t) for t in requests)
        await b.stop()

    asyncio.run(scenario())
