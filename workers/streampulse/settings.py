"""The one settings object of a StreamPulse process.

Built once in the entrypoint (`Settings()`), frozen, and passed down. Nothing else in the
package reads the environment. Every field can be set as ``STREAMPULSE_<GROUP>__<FIELD>``,
for example ``STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JETSTREAM_ENDPOINTS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
    "wss://jetstream1.us-west.bsky.network/subscribe",
    "wss://jetstream2.us-west.bsky.network/subscribe",
)


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
        1, ge=1, le=7, description="Replication of created topics; 3 on a real cluster."
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
        30.0, gt=0, description="Reconnect when no frame arrives for this long."
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
    drop_after: int = Field(
        0, ge=0, description="Fault: close each connection after this many events (0: never)."
    )
    malformed_every: int = Field(
        0, ge=0, description="Fault: send a malformed frame after every N events (0: never)."
    )


class LocalSettings(_Group):
    """The one-machine stack: real engines started as local processes."""

    kafka_version: str = Field("4.4.0", description="Apache Kafka release from Maven Central.")
    kafka_port: int = Field(9092, ge=0, le=65535, description="Broker port of `make up`.")
    kafka_heap_mb: int = Field(1024, ge=256, description="Broker JVM heap in MiB.")
    java_home: Path | None = Field(None, description="JDK for Kafka (17+); none: java on PATH.")
    state_dir: Path = Field(
        Path.home() / ".local" / "state" / "streampulse",
        description="Data and pid files of the local stack (Kafka log, warehouse).",
    )


class Settings(BaseSettings):
    """Everything a StreamPulse process can be told, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMPULSE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    cache_dir: Path = Field(
        Path.home() / ".cache" / "streampulse",
        description="Jars, binaries, models and venvs built by the project.",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port of this process; 0: off."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text for terminals, json for clusters."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    jetstream: JetstreamSettings = JetstreamSettings()
    ingest: IngestSettings = IngestSettings()
    replay: ReplaySettings = ReplaySettings()
    local: LocalSettings = LocalSettings()
