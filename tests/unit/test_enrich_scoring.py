"""Scoring a batch through a scripted gateway: chunking, retries within the budget, Retry-After,
the breaker, rejections narrowed down to the posts a model refuses, probes, cancellation, and
the trace context of a request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from streampulse.enrich.breaker import BreakerState, CircuitBreaker
from streampulse.enrich.gateway import ModelGateway, Prediction, Rejected, Unavailable
from streampulse.enrich.scoring import PROBE_TEXT, ScoredBatch, Scorer, request_trace_context
from streampulse.settings import EnrichSettings

pytestmark = pytest.mark.unit

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SAMPLED_2 = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
DROPPED = "00-2af7651916cd43dd8448eb211c80319c-d7ad6b7169203331-00"

Script = Callable[[str, list[str], int], None]  # (model, texts, call number): raise to fail


class ScriptedGateway(ModelGateway):
    """Answers ``{"echo": text}`` unless the script raises; records every call."""

    def __init__(self, settings: EnrichSettings, script: Script | None = None) -> None:
        super().__init__(settings)
        self.script = script
        self.calls: list[tuple[str, list[str], float]] = []
        self.contexts: list[tuple[str | None, list[str]]] = []

    async def predict(  # type: ignore[override]
        self,
        model: str,
        texts: list[str],
        traceparent: str | None = None,
        linked: list[str] | tuple[str, ...] = (),
    ) -> list[Prediction]:
        self.calls.append((model, list(texts), time.monotonic()))
        self.contexts.append((traceparent, list(linked)))
        await asyncio.sleep(0)
        if self.script is not None:
            self.script(model, texts, len(self.calls))
        return [{"echo": text, "model": model} for text in texts]


def settings(**overrides: object) -> EnrichSettings:
    base: dict[str, object] = {
        "models": ("toxicity", "sentiment"),
        "request_texts": 2,
        "retry_initial_s": 0.001,
        "retry_max_s": 0.005,
        "retry_budget_s": 0.5,
        "breaker_failures": 1000,
        "breaker_open_s": 0.05,
    }
    return EnrichSettings.model_validate({**base, **overrides})


def score(
    texts: list[str],
    script: Script | None = None,
    breaker: CircuitBreaker | None = None,
    **kw: object,
) -> tuple[ScoredBatch, ScriptedGateway]:
    enrich = settings(**kw)
    gateway = ScriptedGateway(enrich, script)
    breaker = breaker or CircuitBreaker(enrich.breaker_failures, enrich.breaker_open_s)
    scorer = Scorer(enrich, gateway, breaker)
    return asyncio.run(scorer.score(texts, [None] * len(texts))), gateway


def test_every_model_scores_every_post_in_requests_of_request_texts() -> None:
    batch, gateway = score(["a", "b", "c", "d", "e"])
    assert batch.failures == {}
    assert [p["toxicity"]["echo"] for p in batch.predictions] == ["a", "b", "c", "d", "e"]
    assert all(p["sentiment"]["model"] == "sentiment" for p in batch.predictions)
    sizes = sorted((model, len(texts)) for model, texts, _at in gateway.calls)
    assert sizes == [("sentiment", 1), ("sentiment", 2), ("sentiment", 2)] + [
        ("toxicity", 1),
        ("toxicity", 2),
        ("toxicity", 2),
    ]


def test_transient_failures_are_retried_until_they_pass() -> None:
    def flaky(_model: str, _texts: list[str], call: int) -> None:
        if call <= 6:
            raise Unavailable("unreachable", "connection reset")

    batch, gateway = score(["a", "b", "c"], flaky)
    assert batch.failures == {}
    assert len(gateway.calls) > 6
    assert all(set(p) == {"toxicity", "sentiment"} for p in batch.predictions)


def test_retry_after_is_honoured() -> None:
    def busy(_model: str, _texts: list[str], call: int) -> None:
        if call == 1:
            raise Unavailable("overloaded", "queue full", retry_after_s=0.2)

    batch, gateway = score(["a"], busy, models=("toxicity",))
    assert batch.failures == {}
    (_m, _t, first), (_m2, _t2, second) = gateway.calls
    assert second - first >= 0.2


def test_past_the_retry_budget_the_posts_fail_with_the_error() -> None:
    def down(model: str, _texts: list[str], _call: int) -> None:
        if model == "sentiment":
            raise Unavailable("timeout", "sentiment: ReadTimeout")

    started = time.monotonic()
    batch, _gateway = score(["a", "b", "c"], down, retry_budget_s=0.2)
    assert time.monotonic() - started < 2.0
    assert sorted(batch.failures) == [0, 1, 2]
    assert all("unavailable after the retry budget" in f for f in batch.failures.values())
    assert all("ReadTimeout" in f for f in batch.failures.values())
    assert all("toxicity" in p and "sentiment" not in p for p in batch.predictions)


def test_an_open_breaker_holds_requests_back_and_its_failure_names_the_last_error() -> None:
    enrich = settings()
    breaker = CircuitBreaker(1, open_s=60.0)

    def down(_model: str, _texts: list[str], _call: int) -> None:
        raise Unavailable("unreachable", "ConnectError: refused")

    batch, gateway = score(["a", "b"], down, breaker=breaker, retry_budget_s=0.3)
    assert breaker.state is BreakerState.OPEN
    assert len(gateway.calls) <= len(enrich.models)  # the first failures opened it
    assert sorted(batch.failures) == [0, 1]
    held = [f for f in batch.failures.values() if "circuit breaker open" in f]
    assert held
    assert all("last error: unreachable: ConnectError: refused" in f for f in held)


def test_a_rejected_request_is_narrowed_down_to_the_refused_posts() -> None:
    def picky(model: str, texts: list[str], _call: int) -> None:
        if model == "toxicity" and "too long" in texts:
            raise Rejected("rejected_413", "toxicity: text_too_long")

    batch, gateway = score(["a", "too long", "c", "d"], picky)
    assert batch.failures == {1: "toxicity rejected_413: toxicity: text_too_long"}
    assert batch.predictions[1] == {"sentiment": {"echo": "too long", "model": "sentiment"}}
    assert batch.predictions[0]["toxicity"]["echo"] == "a"
    singles = [texts for model, texts, _at in gateway.calls if model == "toxicity"]
    assert ["a"] in singles
    assert ["too long"] in singles


def test_a_rejection_means_the_server_is_up() -> None:
    breaker = CircuitBreaker(2, open_s=60.0)
    breaker.failure()

    def refuse(_model: str, _texts: list[str], _call: int) -> None:
        raise Rejected("rejected_400", "bad input")

    score(["a"], refuse, breaker=breaker, models=("toxicity",))
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED  # the rejection reset the count


def test_a_probe_closes_the_breaker_once_the_gateway_answers() -> None:
    enrich = settings(breaker_open_s=0.05)
    breaker = CircuitBreaker(1, enrich.breaker_open_s)
    answers: list[bool] = [False, True]

    def healing(_model: str, texts: list[str], _call: int) -> None:
        assert texts == [PROBE_TEXT]
        if not answers.pop(0):
            raise Unavailable("timeout", "still down")

    gateway = ScriptedGateway(enrich, healing)
    scorer = Scorer(enrich, gateway, breaker)
    breaker.failure()

    async def probing() -> None:
        await scorer.probe()  # still open: no request
        assert gateway.calls == []
        while breaker.state is not BreakerState.CLOSED:
            await asyncio.sleep(0.01)
            await scorer.probe()

    asyncio.run(asyncio.wait_for(probing(), timeout=5))
    assert [model for model, _t, _at in gateway.calls] == ["toxicity", "sentiment"]


def test_cancelling_a_probe_in_flight_frees_the_breaker() -> None:
    enrich = settings()
    breaker = CircuitBreaker(1, 0.0)
    gateway = ScriptedGateway(enrich)
    started = asyncio.Event()

    async def hang(*_args: object, **_kwargs: object) -> list[Prediction]:
        started.set()
        await asyncio.sleep(3600)
        return []

    gateway.predict = hang  # type: ignore[method-assign]
    scorer = Scorer(enrich, gateway, breaker)
    breaker.failure()

    async def cancel() -> None:
        task = asyncio.ensure_future(scorer.score(["a"], [None]))
        await started.wait()
        assert breaker.state is BreakerState.HALF_OPEN
        assert not breaker.allows()  # the probe is out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())
    assert breaker.allows()


@pytest.mark.parametrize(
    ("traceparents", "parent", "links"),
    [
        ([None, None], None, []),
        ([DROPPED, None], DROPPED, []),
        ([DROPPED, SAMPLED, None, SAMPLED_2], SAMPLED, [SAMPLED_2]),
    ],
)
def test_a_request_is_parented_by_its_first_recorded_post(
    traceparents: list[str | None], parent: str | None, links: list[str]
) -> None:
    assert request_trace_context(traceparents) == (parent, links)
