"""Fixtures shared by every tier: settings from the environment, and real services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.settings import KafkaSettings, Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings a process would build from this environment (the Makefile sets the paths)."""
    return Settings()


@pytest.fixture(scope="session")
def jetstream_data_dir(settings: Settings) -> Path:
    data_dir = settings.replay.data_dir
    if data_dir is None or not data_dir.is_dir():
        pytest.fail(
            f"Jetstream captures not found at {data_dir!r}: set STREAMPULSE_REPLAY__DATA_DIR "
            "(make does this: ../shared/data/jetstream)"
        )
    return data_dir


@pytest.fixture(scope="session")
def kafka_broker(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    """One real KRaft broker for the whole session, on a free loopback port."""
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    broker = KafkaBroker(libs=libs, data_dir=tmp_path_factory.mktemp("kafka"), heap_mb=768)
    with broker:
        yield broker


@pytest.fixture
def kafka_settings(kafka_broker: KafkaBroker) -> KafkaSettings:
    """Kafka settings with topics of their own, so tests sharing the broker never mix."""
    suffix = uuid.uuid4().hex[:8]
    return KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        raw_topic=f"raw-{suffix}",
        enriched_topic=f"enriched-{suffix}",
        dlq_topic=f"dlq-{suffix}",
        partitions=3,
    )
