"""make bench-ingest: the replay server at full speed -> one ingest process -> a real Kafka broker.

Baseline, same run and data: a bare websocket client that only counts frames, which is the most
the replay server can feed one connection on this machine (the source's ceiling).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.settings import Settings
from tests.harness.processes import ManagedProcess

EVENTS = int(os.environ.get("BENCH_INGEST_EVENTS", "200000"))


async def _count_frames(url: str, expected: int) -> float:
    """Seconds a bare client needs to receive ``expected`` frames."""
    received = 0
    async with connect(url, compression=None, max_size=None) as websocket:
        started = time.perf_counter()
        while received < expected:
            await websocket.recv(decode=False)
            received += 1
    return time.perf_counter() - started


def _row(name: str, value: str) -> str:
    return f"  {name:<34} {value:>14}"


def main() -> None:
    settings = Settings()
    data_dir = settings.replay.data_dir
    if data_dir is None:
        sys.exit("set STREAMPULSE_REPLAY__DATA_DIR to the Jetstream captures")
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        work = Path(scratch)
        with KafkaBroker(libs=libs, data_dir=work / "kafka") as broker:
            replay = ManagedProcess.streampulse(
                ["replay"],
                {
                    "STREAMPULSE_REPLAY__PORT": "0",
                    "STREAMPULSE_REPLAY__STREAM": "synthetic",
                    "STREAMPULSE_REPLAY__SYNTHETIC_EVENTS": str(EVENTS),
                    "STREAMPULSE_REPLAY__RATE": "max",
                },
                work / "replay.log",
            )
            try:
                match = replay.wait_for_output(r"listening on (ws://\S+/subscribe)", 300)
                url = match.group(1)
                plain_s = asyncio.run(_count_frames(f"{url}?compress=true", EVENTS))
                ingest = ManagedProcess.streampulse(
                    ["ingest", "--stop-after", str(EVENTS)],
                    {
                        "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                        "STREAMPULSE_KAFKA__PARTITIONS": "6",
                        "STREAMPULSE_JETSTREAM__ENDPOINTS": orjson.dumps([url]).decode(),
                        "STREAMPULSE_JETSTREAM__COMPRESS": "true",
                        "STREAMPULSE_LOG_LEVEL": "WARNING",
                    },
                    work / "ingest.log",
                )
                code = ingest.wait(timeout_s=900)
                if code != 0:
                    sys.exit(f"ingest failed ({code}):\n{ingest.output()[-3000:]}")
                summary = orjson.loads(ingest.wait_for_output(r"ingest-summary (\{.*\})").group(1))
            finally:
                replay.signal(signal.SIGTERM)
                replay.stop()

    events = summary["produced"]
    events_per_s = events / summary["streaming_seconds"]
    source_per_s = EVENTS / plain_s
    cpu_per_1k = summary["cpu_seconds"] / events * 1000
    print("ingest benchmark: replay (rate=max, compress=true) -> ingest -> Kafka 4 (acks=all)")
    print(_row("events acknowledged", f"{events:,}"))
    print(_row("ingest events/s", f"{events_per_s:,.0f}"))
    print(_row("ack latency p50 (ms)", f"{summary['ack_p50_ms']:.1f}"))
    print(_row("ack latency p99 (ms)", f"{summary['ack_p99_ms']:.1f}"))
    print(_row("CPU seconds per 1k events", f"{cpu_per_1k:.3f}"))
    print(_row("baseline: bare client frames/s", f"{source_per_s:,.0f}"))
    print(_row("ingest / bare client", f"{events_per_s / source_per_s:.2f}"))
    result = {
        "bench": "ingest",
        "events": events,
        "events_per_s": round(events_per_s, 1),
        "p99_ack_ms": summary["ack_p99_ms"],
        "cpu_s_per_1k_events": round(cpu_per_1k, 4),
        "baseline": {"bare_client_frames_per_s": round(source_per_s, 1)},
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
