"""Where events come from and go to: Kafka, Jetstream, the ingest worker, the replay server,
and traces."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streampulse.settings.groups import Group as _Group

DEFAULT_JETSTREAM_ENDPOINTS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
    "wss://jetstream1.us-west.bsky.network/subscribe",
    "wss://jetstream2.us-west.bsky.network/subscribe",
)


class KafkaSettings(_Group):
    """Where the log lives and how records are written to it."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of the Kafka bootstrap."
    )
    raw_topic: str = Field("bluesky.stream.raw", description="Normalized Jetstream events.")
    enriched_topic: str = Field("bluesky.stream.enriched", description="Posts with ML results.")
    dlq_topic: str = Field("bluesky.stream.dlq", description="Dead letters of every stage.")
    partitions: int = Field(
        6, ge=1, le=1024, description="Partitions for topics the workers create (one per core)."
    )
    replication_factor: int = Field(
        1,
        ge=-1,
        le=9,
        description="Replication of created topics; 3 on a real cluster; -1: the brokers' "
        "default.replication.factor.",
    )
    retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description="Retention of created topics in ms: a week covers Jetstream's 36 h replay.",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="Producer batch compression; zstd suits JSON best."
    )
    linger_ms: int = Field(
        5, ge=0, le=1000, description="Producer batching delay in ms: 5 ms fills batches cheaply."
    )
    batch_size_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest producer batch per partition in bytes."
    )
    delivery_timeout_ms: int = Field(
        120_000,
        ge=1000,
        description="A record not acknowledged within this many ms is a fatal error.",
    )
    queue_max_messages: int = Field(
        200_000, ge=1000, description="Records the producer may hold before it pushes back."
    )


class JetstreamSettings(_Group):
    """The source: Jetstream instances and what to ask them for."""

    endpoints: tuple[str, ...] = Field(
        DEFAULT_JETSTREAM_ENDPOINTS,
        description="Jetstream /subscribe URLs, tried in order on failover.",
    )
    collections: tuple[str, ...] = Field(
        (), description="wantedCollections (NSIDs or prefixes like app.bsky.graph.*); empty: all."
    )
    dids: tuple[str, ...] = Field((), description="wantedDids; empty: every account.")
    compress: bool = Field(True, description="Ask for zstd frames (about 55% fewer bytes).")
    zstd_dictionary: Path | None = Field(
        None, description="The Jetstream zstd dictionary; required when compress is on."
    )
    max_message_bytes: int = Field(
        0, ge=0, description="maxMessageSizeBytes asked of the server; 0: no limit."
    )


class IngestSettings(_Group):
    """The ingest worker: Jetstream -> normalized events -> raw topic."""

    cursor_margin_s: float = Field(
        5.0,
        ge=0,
        description="Rewind of the resume cursor in seconds (Jetstream advises a few seconds).",
    )
    cursor_tail_records: int = Field(
        200, ge=1, description="Records read from each partition's tail to find the cursor."
    )
    start_cursor_us: int | None = Field(
        None, description="Cursor for an empty topic (unix microseconds); none: live tail."
    )
    reconnect_initial_s: float = Field(0.2, gt=0, description="First reconnect backoff.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Ceiling of the reconnect backoff.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Websocket open handshake timeout.")
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Reconnect when no event frame arrives for this many seconds, even if the "
        "socket still answers pings: a stalled server. Live Jetstream sends hundreds of events a "
        "second, so 30 s of silence is a fault, not a quiet moment.",
    )
    max_event_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="Largest event accepted, in bytes of JSON: a zstd frame declaring more is "
        "dead-lettered (oversized_event) before it is decompressed, and the websocket refuses "
        "frames larger than this (plus zstd's worst-case overhead when compressed), which become "
        "dead letters (oversized_frame). 4 MiB: thousands of times the largest real event "
        "(about 1 KB); it bounds the memory one frame can take.",
    )
    max_text_chars: int = Field(
        3000,
        ge=1,
        description="Posts longer than this are dead-lettered (Bluesky allows 300 graphemes).",
    )
    stop_after_events: int = Field(
        0, ge=0, description="Exit cleanly after this many events (0: run forever); for benches."
    )


class ReplaySettings(_Group):
    """The Jetstream-compatible replay server."""

    host: str = Field("127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(6008, ge=0, le=65535, description="Bind port; 0 picks a free one.")
    data_dir: Path | None = Field(
        None, description="Directory of Jetstream captures (*.jsonl) and the rate profile CSV."
    )
    stream: Literal["recorded", "synthetic", "mixed"] = Field(
        "mixed", description="Captured events, generated events, or captures then generated."
    )
    synthetic_events: int = Field(
        20_000, ge=0, description="How many generated events follow the captures."
    )
    rate: str = Field(
        "profile",
        description="'profile' (the real per-second rates), 'max', or events per second.",
    )
    seed: int = Field(7, description="Seed of the synthetic generator: same seed, same stream.")
    loop: bool = Field(False, description="Start the stream again (with new times) at its end.")
    rebase_to_now: bool = Field(
        False,
        description="Move the stream's times to start now, gaps between captures closed: "
        "event time then follows the wall clock, as live Jetstream's does (the local stack).",
    )
    drop_after: int = Field(
        0, ge=0, description="Fault: close each connection after this many events (0: never)."
    )
    malformed_every: int = Field(
        0, ge=0, description="Fault: send a malformed frame after every N events (0: never)."
    )
    silent_after: int = Field(
        0,
        ge=0,
        description="Fault: after this many events a connection goes silent: it stays open, "
        "answers pings, and sends nothing more (0: never). What a client's idle timeout is for.",
    )
    bomb_every: int = Field(
        0,
        ge=0,
        description="Fault: after every N-th event of the stream (by position, so a reconnect "
        "meets it again), a zstd frame declaring bomb_bytes of content, on compressed "
        "connections (0: never).",
    )
    bomb_bytes: int = Field(
        1 << 32,
        ge=1,
        description="Content size in bytes a zstd bomb declares and holds (in 128 KiB "
        "run-length blocks): 4 GiB, more than a worker's memory, in a 128 KiB frame.",
    )
    oversized_every: int = Field(
        0,
        ge=0,
        description="Fault: after every N-th event of the stream (by position), a post event of "
        "oversized_bytes of JSON (0: never).",
    )
    oversized_bytes: int = Field(
        16 << 20,
        ge=1024,
        description="Size in bytes of an oversized event; its random text keeps about three "
        "quarters of it compressed: 16 MiB is well over ingest's 4 MiB websocket limit either way.",
    )
    deep_every: int = Field(
        0,
        ge=0,
        description="Fault: after every N-th event of the stream (by position), a record nested "
        "deeper than JSON encoders (512 levels) or decoders (2048) accept, alternately (0: never).",
    )


class TelemetrySettings(_Group):
    """Traces: one trace per post across ingest, Kafka, enrich and the model server.

    Spans are exported only where a destination is set (an OTLP endpoint, a JSON-lines file, or
    both); with neither, no spans are recorded and ingest adds no ``traceparent`` headers.
    """

    traces_file: Path | None = Field(
        None,
        description="Append finished spans to this JSON-lines file, one span a line (what local "
        "runs and tests read); several processes may share one file. None: no file.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="Base URL of an OTLP/HTTP collector (http://collector:4318); spans are "
        "posted to <url>/v1/traces. None: no OTLP export.",
    )
    otlp_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of one OTLP export request in seconds."
    )
    trace_sample_ratio: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Fraction (0..1) of posts whose trace is recorded, decided once at ingest "
        "from the trace id and followed by every later stage. 0.1 keeps about 7 traces a "
        "second of the live firehose (about 70 posts/s) and a small cost when ingest catches "
        "up at full speed; 1.0 records every post (tests, debugging).",
    )
