"""Scoring a batch of posts with every model: chunked, concurrent, retried, isolated.

Every model sees every post, in requests of ``request_texts`` texts, all in flight together
(bounded by the gateway's ``max_in_flight``). Transient failures are retried with jittered
backoff, honouring Retry-After, behind the circuit breaker, until the batch's retry budget runs
out; the failure then names the last error the gateway gave. A permanent rejection of a request
is narrowed down by retrying its texts one by one, so only the posts a model really refuses fail;
each failure carries its reason.

With no batch to score while the breaker is open, the worker calls ``probe``: one short request
whenever the breaker allows one, so it closes again once the gateway is back.

Tracing: a request has one parent, the ``traceparent`` of the first post of the request whose
trace is recorded (else of its first post); the other recorded posts' contexts go along as span
links (``TRACE_LINKS_HEADER``), so every traced post leads to the model-server spans that scored
it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from streampulse.backoff import Backoff
from streampulse.enrich import metrics
from streampulse.enrich.breaker import CircuitBreaker
from streampulse.enrich.gateway import ModelGateway, Prediction, Rejected, Unavailable
from streampulse.settings import EnrichSettings
from streampulse.tracing import is_sampled


class _BudgetExhausted(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class ScoredBatch:
    """Per post (by index): the predictions of each model, or why it could not be scored."""

    predictions: list[dict[str, Prediction]]
    failures: dict[int, str] = field(default_factory=dict)


def request_trace_context(traceparents: list[str | None]) -> tuple[str | None, list[str]]:
    """The parent ``traceparent`` of a request carrying these posts, and the contexts to link."""
    sampled = [tp for tp in traceparents if tp and is_sampled(tp)]
    if not sampled:
        return next((tp for tp in traceparents if tp), None), []
    return sampled[0], sampled[1:]


PROBE_TEXT = "probe"


class Scorer:
    def __init__(
        self, settings: EnrichSettings, gateway: ModelGateway, breaker: CircuitBreaker
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._breaker = breaker
        self._last_failure = "none yet"
        self._probes = 0

    def _failed(self, model: str, exc: Unavailable) -> None:
        self._breaker.failure()
        self._last_failure = str(exc)
        metrics.MODEL_REQUESTS.labels(model, exc.reason).inc()

    async def probe(self) -> None:
        """One request (a short text, each model in turn) if the breaker allows one now.

        For a worker with nothing to score while the breaker is open: without a request the
        breaker would never learn that the gateway is back.
        """
        if not self._breaker.allows():
            return
        model = self._settings.models[self._probes % len(self._settings.models)]
        self._probes += 1
        try:
            await self._gateway.predict(model, [PROBE_TEXT])
        except Unavailable as exc:
            self._failed(model, exc)
            return
        except Rejected:
            pass  # the server answered: it is up
        except BaseException:
            self._breaker.abandon_probe()
            raise
        self._breaker.success()

    async def score(self, texts: list[str], traceparents: list[str | None]) -> ScoredBatch:
        batch = ScoredBatch(predictions=[{} for _ in texts])
        deadline = time.monotonic() + self._settings.retry_budget_s
        size = self._settings.request_texts
        chunks = [
            list(range(start, min(start + size, len(texts))))
            for start in range(0, len(texts), size)
        ]
        await asyncio.gather(
            *(
                self._score_chunk(model, chunk, texts, traceparents, deadline=deadline, batch=batch)
                for model in self._settings.models
                for chunk in chunks
            )
        )
        return batch

    async def _score_chunk(
        self,
        model: str,
        indices: list[int],
        texts: list[str],
        traceparents: list[str | None],
        *,
        deadline: float,
        batch: ScoredBatch,
    ) -> None:
        try:
            outputs = await self._with_retries(
                model,
                [texts[i] for i in indices],
                request_trace_context([traceparents[i] for i in indices]),
                deadline,
            )
        except Rejected as exc:
            if len(indices) == 1:
                batch.failures.setdefault(indices[0], f"{model} {exc}")
                return
            await asyncio.gather(
                *(
                    self._score_chunk(
                        model, [i], texts, traceparents, deadline=deadline, batch=batch
                    )
                    for i in indices
                )
            )
            return
        except _BudgetExhausted as exc:
            for i in indices:
                batch.failures.setdefault(i, exc.reason)
            return
        for i, output in zip(indices, outputs, strict=True):
            batch.predictions[i][model] = output

    async def _with_retries(
        self,
        model: str,
        texts: list[str],
        trace_context: tuple[str | None, list[str]],
        deadline: float,
    ) -> list[Prediction]:
        backoff = Backoff(self._settings.retry_initial_s, self._settings.retry_max_s)
        while True:
            while not self._breaker.allows():
                if time.monotonic() > deadline:
                    raise _BudgetExhausted(
                        f"{model} unavailable: circuit breaker open through the retry budget; "
                        f"last error: {self._last_failure}"
                    )
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            try:
                outputs = await self._gateway.predict(model, texts, *trace_context)
            except Unavailable as exc:
                self._failed(model, exc)
                delay = max(backoff.next_delay(), exc.retry_after_s or 0.0)
                if time.monotonic() + delay > deadline:
                    raise _BudgetExhausted(
                        f"{model} unavailable after the retry budget: {exc}"
                    ) from exc
                metrics.RETRIES.labels(model).inc()
                await asyncio.sleep(delay)
                continue
            except Rejected as exc:
                self._breaker.success()  # the server answered: it is healthy
                metrics.MODEL_REQUESTS.labels(model, exc.reason).inc()
                raise
            except BaseException:
                self._breaker.abandon_probe()
                raise
            self._breaker.success()
            metrics.MODEL_REQUESTS.labels(model, "ok").inc()
            metrics.MODEL_LATENCY.labels(model).observe(time.perf_counter() - started)
            return outputs
