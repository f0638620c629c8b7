"""The HTTP API of the model server (aiohttp).

    POST /v1/models/{name}:predict   {"inputs": ["text", ...]} -> {"model", "version", "outputs"}
    GET  /v1/models                  every model with its version, task and labels
    GET  /healthz                    the process is up
    GET  /readyz                     every model is loaded and warmed up
    GET  /metrics                    Prometheus

Errors are answered as ``{"error": {"code", "message"}}``; they are translated from the serving
exception tree in one middleware: bad input 400/404/413, overload 503 with Retry-After,
inference failures 500.

Each predict request is a ``predict <model>`` span, a child of the request's ``traceparent`` and
linked to the contexts named in ``TRACE_LINKS_HEADER`` (the other posts a batch request carries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streampulse.serving import metrics
from streampulse.serving.batching import MicroBatcher
from streampulse.serving.errors import BadRequest, InferenceError, Overloaded, RequestRejected
from streampulse.serving.models import ServedModel, describe
from streampulse.serving.tasks import Prediction
from streampulse.settings import ServingSettings
from streampulse.tracing import TRACE_LINKS_HEADER, context_from_headers, links_from_header

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

WARMUP_TEXTS = (
    "warming up the model server",
    "A longer warm-up post about the weather in Lisbon, with an emoji 🌧️ and a #hashtag.",
)

_BATCHERS = web.AppKey("batchers", dict[str, MicroBatcher[Prediction]])
_MODELS = web.AppKey("models", dict[str, ServedModel])
_SETTINGS = web.AppKey("settings", ServingSettings)
_READY = web.AppKey("ready", asyncio.Event)
_WARMUP = web.AppKey("warmup", list[asyncio.Task[None]])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_inputs(body: bytes, settings: ServingSettings) -> list[str]:
    """The ``inputs`` of a predict body; ``BadRequest`` with a message saying what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadRequest('body must be a JSON object with "inputs": ["text", ...]')
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise BadRequest('"inputs" must be a list of strings')
    if not inputs:
        raise BadRequest('"inputs" is empty; send at least one text')
    if len(inputs) > settings.max_texts_per_request:
        raise BadRequest(
            f'"inputs" has {len(inputs)} texts; '
            f"at most {settings.max_texts_per_request} per request",
            status=413,
            code="too_many_inputs",
        )
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise BadRequest(f'"inputs"[{index}] is {type(text).__name__}, not a string')
        if not text.isascii() and not _is_utf8(text):
            raise BadRequest(f'"inputs"[{index}] has a lone surrogate (not valid Unicode text)')
        if len(text) > settings.max_text_chars:
            raise BadRequest(
                f'"inputs"[{index}] has {len(text)} characters; at most {settings.max_text_chars}',
                status=413,
                code="text_too_long",
            )
    return inputs


@web.middleware
async def _translate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where serving errors become HTTP answers."""
    name = request.match_info.get("name", "-")
    model = name if name in request.app[_MODELS] else "-"  # no label per unknown name
    try:
        return await handler(request)
    except Overloaded as exc:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return _error(exc.status, exc.code, exc.message, headers)
    except RequestRejected as exc:
        metrics.ERRORS.labels(model, "bad_request").inc()
        return _error(exc.status, exc.code, exc.message)
    except InferenceError as exc:
        metrics.ERRORS.labels(model, "inference").inc()
        return _error(500, "inference_failed", str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        metrics.ERRORS.labels(model, "bad_request").inc()
        limit = body_limit(request.app[_SETTINGS])
        message = f"request body too large: at most {limit} bytes ({exc.text})"
        return _error(413, "body_too_large", message)


async def _predict(request: web.Request) -> web.Response:
    started = time.perf_counter()
    name = request.match_info["name"]
    batcher = request.app[_BATCHERS].get(name)
    if batcher is None:
        raise BadRequest(
            f"no model named {name!r}; GET /v1/models lists them", status=404, code="unknown_model"
        )
    model = request.app[_MODELS][name]
    settings = request.app[_SETTINGS]
    status = 200
    with tracer.start_as_current_span(
        f"predict {name}",
        context=context_from_headers(request.headers),
        kind=SpanKind.SERVER,
        links=links_from_header(
            request.headers.get(TRACE_LINKS_HEADER), settings.max_texts_per_request
        ),
        attributes={"streampulse.model": name, "streampulse.model.version": model.version},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            texts = parse_inputs(await request.read(), settings)
            span.set_attribute("streampulse.batch_size", len(texts))
            outputs = await batcher.submit(texts)
        except RequestRejected as exc:
            status = exc.status
            raise
        except InferenceError as exc:
            status = 500
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            log.warning("%s: inference failed: %s", name, exc)
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            metrics.REQUESTS.labels(name, str(status)).inc()
            metrics.REQUEST_LATENCY.labels(name).observe(time.perf_counter() - started)
    return _json({"model": model.name, "version": model.version, "outputs": outputs})


async def _list_models(request: web.Request) -> web.Response:
    return _json({"models": [describe(m) for m in request.app[_MODELS].values()]})


async def _healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[_READY].is_set():
        return _json({"status": "ready", "models": sorted(request.app[_MODELS].keys())})
    return _json({"status": "warming up"}, status=503)


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _warm_up(app: web.Application, rounds: int) -> None:
    try:
        for batcher in app[_BATCHERS].values():
            for _ in range(rounds):
                await batcher.submit(list(WARMUP_TEXTS))
    except InferenceError:
        log.exception("warm-up failed; the server stays not ready")
        return
    app[_READY].set()
    log.info("ready: %s", ", ".join(sorted(app[_MODELS].keys())))


async def _start(app: web.Application) -> None:
    settings = app[_SETTINGS]
    for batcher in app[_BATCHERS].values():
        batcher.start()
    app[_WARMUP].append(asyncio.create_task(_warm_up(app, settings.warmup_batches)))


async def _stop(app: web.Application) -> None:
    for task in app[_WARMUP]:
        task.cancel()
    await asyncio.gather(*app[_WARMUP], return_exceptions=True)
    await asyncio.gather(*(b.stop() for b in app[_BATCHERS].values()))


def body_limit(settings: ServingSettings) -> int:
    """Largest request body in bytes: every text at its limit, 4 bytes a character, plus framing."""
    return settings.max_texts_per_request * (settings.max_text_chars * 4 + 16) + 1024


def build_app(models: Mapping[str, ServedModel], settings: ServingSettings) -> web.Application:
    """The aiohttp application serving ``models`` with ``settings``."""
    app = web.Application(client_max_size=body_limit(settings), middlewares=[_translate_errors])
    app[_SETTINGS] = settings
    app[_MODELS] = dict(models)
    app[_READY] = asyncio.Event()
    app[_WARMUP] = []
    app[_BATCHERS] = {
        name: MicroBatcher[Prediction](
            name,
            model.predict,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue_texts,
            batching=settings.batching,
        )
        for name, model in models.items()
    }
    app.router.add_post("/v1/models/{name:[^/:]+}:predict", _predict)
    app.router.add_get("/v1/models", _list_models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


def serve(settings: ServingSettings, models: Mapping[str, ServedModel] | None = None) -> None:
    """Load the configured models and serve them until interrupted."""
    import uvloop  # noqa: PLC0415 - only the server process needs it

    from streampulse.serving.models import load_models  # noqa: PLC0415

    loaded = dict(models) if models is not None else load_models(settings)
    app = build_app(loaded, settings)
    log.info("model server on http://%s:%d", settings.host, settings.port)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        handler_cancellation=True,  # a caller that hangs up frees its place in the queue
        loop=uvloop.new_event_loop(),
    )
