"""Dynamic micro-batching: concurrent requests of one model share an inference.

Texts of every request join one bounded queue. A collector takes up to ``max_batch_size`` texts,
waiting at most ``max_wait`` after the oldest arrived, and runs them as one batch on the model's
inference thread; while that runs the next batch fills. A request whose texts do not fit in the
queue is refused with ``Overloaded`` (503 + Retry-After) instead of growing memory. With batching
off each request runs alone, as behind a plain load-balanced gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streampulse.serving import metrics
from streampulse.serving.errors import InferenceError, Overloaded

log = logging.getLogger(__name__)

R = TypeVar("R")

_RETRY_AFTER_MAX_S = 30


@dataclass(slots=True)
class _Item(Generic[R]):
    text: str
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[R]):
    """Queue, collector and inference thread of one model."""

    def __init__(
        self,
        name: str,
        predict: Callable[[Sequence[str]], list[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        batching: bool = True,
    ) -> None:
        self.name = name
        self._predict = predict
        self._max_batch = max_batch_size if batching else 1
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._batching = batching
        self._queue: deque[_Item[R]] = deque()
        self._queued = 0  # texts accepted and not yet answered
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")
        self._collector: asyncio.Task[None] | None = None
        self._rate = 0.0  # texts per second, smoothed; sizes Retry-After

    @property
    def queued(self) -> int:
        """Texts accepted and not yet answered."""
        return self._queued

    def start(self) -> None:
        """Start the collector on the running loop."""
        if self._batching and self._collector is None:
            self._collector = asyncio.create_task(self._collect(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop collecting, fail what is still queued, and release the inference thread."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(InferenceError(f"{self.name}: server stopping"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        if self._rate <= 0:
            return 1
        return max(1, min(_RETRY_AFTER_MAX_S, math.ceil(self._queued / self._rate)))

    def _admit(self, count: int) -> None:
        if self._queued + count > self._max_queue:
            metrics.ERRORS.labels(self.name, "overloaded").inc()
            raise Overloaded(
                f"model {self.name!r} is overloaded ({self._queued} texts queued)",
                self.retry_after_s(),
            )
        self._queued += count
        metrics.QUEUED.labels(self.name).set(self._queued)

    def _release(self, count: int) -> None:
        self._queued -= count
        metrics.QUEUED.labels(self.name).set(self._queued)

    async def submit(self, texts: Sequence[str]) -> list[R]:
        """Results for ``texts``, in order; ``Overloaded`` when the queue cannot take them."""
        self._admit(len(texts))
        if not self._batching:
            try:
                return await self._run_alone(texts)
            finally:
                self._release(len(texts))
        loop = asyncio.get_running_loop()
        items = [_Item[R](text, loop.create_future()) for text in texts]
        self._queue.extend(items)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()  # the caller went away: the collector skips it
                elif not item.future.cancelled():
                    item.future.exception()  # one failure answers the request; mark all seen

    async def _run_alone(self, texts: Sequence[str]) -> list[R]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._timed, list(texts), started)
        return results

    def _timed(self, texts: list[str], enqueued: float) -> list[R]:
        """Run one batch on the inference thread and record its metrics."""
        started = time.perf_counter()
        metrics.QUEUE_WAIT.labels(self.name).observe(started - enqueued)
        results = self._predict(texts)
        elapsed = time.perf_counter() - started
        metrics.INFERENCE.labels(self.name).observe(elapsed)
        metrics.BATCH_SIZE.labels(self.name).observe(len(texts))
        metrics.TEXTS.labels(self.name).inc(len(texts))
        rate = len(texts) / elapsed if elapsed > 0 else 0.0
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        if len(results) != len(texts):
            raise InferenceError(f"{self.name}: {len(results)} results for {len(texts)} texts")
        return results

    def _take(self) -> list[_Item[R]]:
        batch: list[_Item[R]] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if item.future.done():  # the caller gave up
                self._release(1)
                continue
            batch.append(item)
        return batch

    async def _fill(self) -> None:
        """Wait until a full batch is queued or the oldest text has waited ``max_wait``."""
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._queue[0].enqueued + self._max_wait_s
        while len(self._queue) < self._max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._fill()
            batch = self._take()
            if not batch:
                continue
            texts = [item.text for item in batch]
            oldest = min(item.enqueued for item in batch)
            try:
                results = await loop.run_in_executor(self._executor, self._timed, texts, oldest)
            except Exception as exc:
                log.exception("%s: a batch of %d texts failed", self.name, len(batch))
                error = exc if isinstance(exc, InferenceError) else InferenceError(str(exc))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
            finally:
                self._release(len(batch))
