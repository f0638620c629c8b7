"""The model gateway as seen by the enrich worker: one HTTP call, classified outcomes.

``predict`` returns one result per text, or raises ``Rejected`` (the request itself is bad:
retrying cannot help) or ``Unavailable`` (the server is down, overloaded or slow: retry later,
after ``retry_after_s`` when the server said so). httpx errors are translated here and nowhere
else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from streampulse.settings import EnrichSettings
from streampulse.tracing import TRACE_LINKS_HEADER, TRACEPARENT, links_header

Prediction = dict[str, Any]

_PERMANENT = frozenset((400, 404, 413, 422))


class GatewayError(Exception):
    """Base of the gateway's outcomes other than success."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class Rejected(GatewayError):
    """The model refused these inputs for good (4xx)."""


class Unavailable(GatewayError):
    """The model could not answer now; the same request may succeed later."""

    def __init__(self, reason: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason, message)
        self.retry_after_s = retry_after_s


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        error = orjson.loads(response.content).get("error", {})
        return f"{error.get('code', response.status_code)}: {error.get('message', '')}"[:500]
    except (orjson.JSONDecodeError, AttributeError):
        return response.text[:500]


class ModelGateway:
    """Bounded concurrency (``max_in_flight``) over one pooled async HTTP client."""

    def __init__(self, settings: EnrichSettings, client: httpx.AsyncClient | None = None) -> None:
        self._base = settings.gateway_url.rstrip("/")
        self._bases = {name: url.rstrip("/") for name, url in settings.model_urls.items()}
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.request_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.max_in_flight,
                max_keepalive_connections=settings.max_in_flight,
            ),
        )
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self.versions: dict[str, str] = {}

    async def predict(
        self,
        model: str,
        texts: list[str],
        traceparent: str | None = None,
        linked: Sequence[str] = (),
    ) -> list[Prediction]:
        """One result per text, in order.

        ``traceparent`` is the request's parent context; ``linked`` names the contexts of the
        other posts it carries, which the model server links its span to.
        """
        headers = {"content-type": "application/json"}
        if traceparent:
            headers[TRACEPARENT] = traceparent
        if linked:
            headers[TRACE_LINKS_HEADER] = links_header(linked)
        url = f"{self._bases.get(model, self._base)}/v1/models/{model}:predict"
        async with self._slots:
            try:
                response = await self._client.post(
                    url, content=orjson.dumps({"inputs": texts}), headers=headers
                )
            except httpx.TimeoutException as exc:
                raise Unavailable("timeout", f"{model}: {exc!r}") from exc
            except httpx.TransportError as exc:
                raise Unavailable("unreachable", f"{model}: {exc!r}") from exc
        status = response.status_code
        if status in _PERMANENT:
            raise Rejected(f"rejected_{status}", f"{model}: {_error_message(response)}")
        if status != 200:
            reason = "overloaded" if status in (429, 503) else f"http_{status}"
            raise Unavailable(
                reason, f"{model}: {_error_message(response)}", _retry_after(response)
            )
        try:
            body = orjson.loads(response.content)
            outputs: list[Prediction] = body["outputs"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise Unavailable("bad_response", f"{model}: {exc!r}") from exc
        if len(outputs) != len(texts):
            raise Unavailable("bad_response", f"{model}: {len(outputs)} outputs for {len(texts)}")
        self.versions[model] = str(body.get("version", "unknown"))
        return outputs

    async def aclose(self) -> None:
        await self._client.aclose()
