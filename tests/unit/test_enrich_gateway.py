"""The gateway client: one HTTP call, every outcome classified (httpx's mock transport, no
network): results in order, permanent rejections, transient failures with Retry-After, transport
errors and malformed answers, headers, per-model URLs and the in-flight bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import orjson
import pytest

from streampulse.enrich.gateway import ModelGateway, Rejected, Unavailable
from streampulse.settings import EnrichSettings
from streampulse.tracing import TRACE_LINKS_HEADER, TRACEPARENT

pytestmark = pytest.mark.unit

Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]
TP1 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP2 = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"


def gateway(handler: Handler, **settings: object) -> ModelGateway:
    enrich = EnrichSettings.model_validate({"gateway_url": "http://gw:8500/", **settings})
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ModelGateway(enrich, client)


def answer(status: int = 200, body: object = None, **headers: str) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        content: object = body
        if body is None:
            texts = orjson.loads(request.content)["inputs"]
            content = {"version": "7", "outputs": [{"label": t} for t in texts]}
        raw = content if isinstance(content, bytes) else orjson.dumps(content)
        return httpx.Response(status, content=raw, headers=headers)

    return handle


def predict(gw: ModelGateway, texts: list[str], **kwargs: object) -> list[dict[str, object]]:
    async def go() -> list[dict[str, object]]:
        try:
            return await gw.predict("toxicity", texts, **kwargs)  # type: ignore[arg-type]
        finally:
            await gw.aclose()

    return asyncio.run(go())


def test_one_result_per_text_in_order_and_the_version_is_kept() -> None:
    gw = gateway(answer())
    assert predict(gw, ["a", "b", "c"]) == [{"label": "a"}, {"label": "b"}, {"label": "c"}]
    assert gw.versions == {"toxicity": "7"}


def test_the_request_carries_its_trace_context_and_goes_to_the_models_own_url() -> None:
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await answer()(request)

    gw = gateway(handle, model_urls={"toxicity": "http://tox:9000/"})
    predict(gw, ["a"], traceparent=TP1, linked=[TP2])
    assert str(seen[0].url) == "http://tox:9000/v1/models/toxicity:predict"
    assert seen[0].headers[TRACEPARENT] == TP1
    assert seen[0].headers[TRACE_LINKS_HEADER] == TP2
    assert orjson.loads(seen[0].content) == {"inputs": ["a"]}

    gw = gateway(handle, model_urls={"ner": "http://ner:9000"})
    predict(gw, ["a"])
    assert str(seen[1].url) == "http://gw:8500/v1/models/toxicity:predict"
    assert TRACEPARENT not in seen[1].headers
    assert TRACE_LINKS_HEADER not in seen[1].headers


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_4xx_is_a_permanent_rejection_naming_the_servers_error(status: int) -> None:
    body = {"error": {"code": "text_too_long", "message": "at most 3000"}}
    with pytest.raises(Rejected) as caught:
        predict(gateway(answer(status, body)), ["x" * 4000])
    assert caught.value.reason == f"rejected_{status}"
    assert "text_too_long: at most 3000" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retry_after", "reason", "delay"),
    [
        (503, "2", "overloaded", 2.0),
        (429, "0.5", "overloaded", 0.5),
        (503, "-3", "overloaded", 0.0),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", "overloaded", None),
        (500, None, "http_500", None),
        (502, None, "http_502", None),
    ],
)
def test_overload_and_server_errors_are_transient(
    status: int, retry_after: str | None, reason: str, delay: float | None
) -> None:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    with pytest.raises(Unavailable) as caught:
        predict(gateway(answer(status, {"error": {}}, **headers)), ["a"])
    assert caught.value.reason == reason
    assert caught.value.retry_after_s == delay


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("refused"), "unreachable"),
        (httpx.RemoteProtocolError("reset"), "unreachable"),
        (httpx.ReadError("connection reset by peer"), "unreachable"),
        (httpx.ConnectTimeout("syn unanswered"), "timeout"),
        (httpx.ReadTimeout("no answer"), "timeout"),
        (httpx.PoolTimeout("pool"), "timeout"),
    ],
)
def test_transport_errors_are_transient(error: httpx.HTTPError, reason: str) -> None:
    async def handle(_request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(Unavailable) as caught:
        predict(gateway(handle), ["a"])
    assert caught.value.reason == reason
    assert isinstance(caught.value.__cause__, httpx.TransportError)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        {"no": "outputs"},
        {"outputs": "nope"},
        {"outputs": [{"label": "only one"}]},
        [1, 2],
    ],
)
def test_a_malformed_answer_is_transient(body: object) -> None:
    with pytest.raises(Unavailable) as caught:
        predict(gateway(answer(200, body)), ["a", "b"])
    assert caught.value.reason == "bad_response"


def test_at_most_max_in_flight_requests_at_once() -> None:
    active = 0
    peak = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return await answer()(request)

    gw = gateway(handle, max_in_flight=3)

    async def go() -> None:
        await asyncio.gather(*(gw.predict("toxicity", [str(i)]) for i in range(20)))
        await gw.aclose()

    asyncio.run(go())
    assert peak == 3
