"""What one run of the job is told: where to read, where to write, and how to window."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class JobOptions:
    bootstrap_servers: str = "127.0.0.1:9092"
    raw_topic: str = "bluesky.stream.raw"
    enriched_topic: str = "bluesky.stream.enriched"
    group_id: str = "streampulse-flink"
    # A local path or s3://bucket/path: the Paimon filesystem catalog's warehouse.
    warehouse: str = "/tmp/streampulse-warehouse"  # noqa: S108 - overridden by every caller
    database: str = "streampulse"
    # For an s3:// warehouse: an S3-compatible endpoint (MinIO, versitygw; empty: AWS) and the
    # access key. The secret key is read from STREAMPULSE_PAIMON__S3_SECRET_KEY only, so it never
    # appears on a command line.
    s3_endpoint: str = ""
    s3_access_key: str = ""
    # Events more than this far behind the newest event time seen are late (counted apart).
    # Jetstream's time_us is assigned by one server, so seconds of disorder cover it.
    watermark_delay_s: int = 5
    # Checkpoints commit Kafka offsets and Paimon snapshots together: data is visible after one.
    checkpoint_interval_ms: int = 10_000
    checkpoint_dir: str = ""
    # A retained checkpoint (or savepoint) directory to restore the job's state from.
    restore_from: str = ""
    parallelism: int = 1
    # Flink's working files (uploaded jars, extracted libraries, spill files), by default under
    # the system temp directory. A caller that owns a directory passes it here and removes it
    # once the job has exited, so no run leaves files behind, even one that is killed.
    scratch_dir: str = ""
    # Port of the mini-cluster's REST API (job state, checkpoints); 0 picks a free one.
    rest_port: int = 0
    # A partition without records for this long stops holding the watermark back.
    idle_timeout_ms: int = 10_000
    # Duplicates (same event_id) within this time are counted once; state older is dropped.
    dedup_ttl_h: int = 36
    toxic_threshold: float = 0.5
    trending_window_min: int = 15
    trending_top_n: int = 20
    # Author activity of the hour so far is written every this many minutes (and at its end).
    author_step_min: int = 5
    # Engagement (likes, reposts, replies) counts toward a post for this long after it.
    engagement_window_min: int = 60
    # Anomalies: a minute's value against the previous `anomaly_trailing_min` minutes that had
    # data (at least `anomaly_min_history` of them); kept when the z-score reaches the threshold.
    anomaly_trailing_min: int = 60
    anomaly_min_history: int = 10
    anomaly_z_threshold: float = 3.0

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> JobOptions:
        """Options from ``--flag value`` arguments; defaults from STREAMPULSE_* variables."""
        defaults = cls()
        env = {
            "bootstrap_servers": os.environ.get("STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS"),
            "raw_topic": os.environ.get("STREAMPULSE_KAFKA__RAW_TOPIC"),
            "enriched_topic": os.environ.get("STREAMPULSE_KAFKA__ENRICHED_TOPIC"),
            "warehouse": os.environ.get("STREAMPULSE_PAIMON__WAREHOUSE"),
            "s3_endpoint": os.environ.get("STREAMPULSE_PAIMON__S3_ENDPOINT"),
            "s3_access_key": os.environ.get("STREAMPULSE_PAIMON__S3_ACCESS_KEY"),
        }
        parser = argparse.ArgumentParser(prog="streampulse_flink.job")
        for name, default in vars(defaults).items():
            value = env.get(name) or default
            parser.add_argument(
                f"--{name.replace('_', '-')}", dest=name, type=type(default), default=value
            )
        return cls(**vars(parser.parse_args(argv)))

    def s3_options(self) -> dict[str, str]:
        """The S3 client's options, named as both Paimon's catalog and Flink's S3 file system
        read them (``s3.*``; Flink's plugin maps them to Hadoop's ``fs.s3a.*``)."""
        options = {
            "s3.access-key": self.s3_access_key,
            "s3.secret-key": os.environ.get("STREAMPULSE_PAIMON__S3_SECRET_KEY", ""),
            "s3.path.style.access": "true",
            # Keep directory markers: deleting them after each write is wasted requests, and
            # stores that map objects to directories (versitygw) refuse it.
            "s3.directory.marker.retention": "keep",
        }
        if self.s3_endpoint:
            options["s3.endpoint"] = self.s3_endpoint
        return {key: value for key, value in options.items() if value}

    def catalog_sql(self, catalog: str) -> str:
        """``CREATE CATALOG`` for the Paimon filesystem catalog of ``warehouse``."""
        options = {"type": "paimon", "warehouse": self.warehouse}
        if self.warehouse.startswith(("s3://", "s3a://")):
            options.update(self.s3_options())
        pairs = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())
        return f"CREATE CATALOG `{catalog}` WITH ({pairs})"


def sql_string(value: str) -> str:
    """A Flink SQL string literal: quotes doubled, so a key or path with ``'`` stays one value."""
    return "'" + value.replace("'", "''") + "'"
