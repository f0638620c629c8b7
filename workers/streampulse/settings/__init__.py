"""The one settings object of a StreamPulse process.

Built once in the entrypoint (`Settings()`), frozen, and passed down. Nothing else in the
package reads the environment. Every field can be set as ``STREAMPULSE_<GROUP>__<FIELD>``,
for example ``STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from streampulse.settings.stages import (
    DashboardSettings,
    EnrichSettings,
    LocalSettings,
    PaimonSettings,
    ServingSettings,
    TrinoSettings,
)
from streampulse.settings.streams import (
    DEFAULT_JETSTREAM_ENDPOINTS,
    IngestSettings,
    JetstreamSettings,
    KafkaSettings,
    ReplaySettings,
    TelemetrySettings,
)

__all__ = [
    "DEFAULT_JETSTREAM_ENDPOINTS",
    "DashboardSettings",
    "EnrichSettings",
    "IngestSettings",
    "JetstreamSettings",
    "KafkaSettings",
    "LocalSettings",
    "PaimonSettings",
    "ReplaySettings",
    "ServingSettings",
    "Settings",
    "TelemetrySettings",
    "TrinoSettings",
]


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
    health_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the worker's /healthz and /readyz (the kubelet's probes); 0: off.",
    )
    bind_host: str = Field(
        "127.0.0.1",
        description="Bind address of the /metrics and health endpoints: loopback on a machine, "
        "0.0.0.0 in a pod (the operator sets it) so Prometheus and the kubelet reach them.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text for terminals, json for clusters."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    telemetry: TelemetrySettings = TelemetrySettings()
    kafka: KafkaSettings = KafkaSettings()
    jetstream: JetstreamSettings = JetstreamSettings()
    ingest: IngestSettings = IngestSettings()
    replay: ReplaySettings = ReplaySettings()
    local: LocalSettings = LocalSettings()
    enrich: EnrichSettings = EnrichSettings()
    serving: ServingSettings = ServingSettings()
    paimon: PaimonSettings = PaimonSettings()
    dashboard: DashboardSettings = DashboardSettings()
    trino: TrinoSettings = TrinoSettings()
