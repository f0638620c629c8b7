"""The one settings object of the operator process, built in the entrypoint and passed down.

Every field can be set as ``STREAMPULSE_OPERATOR_<FIELD>``, e.g.
``STREAMPULSE_OPERATOR_RESYNC_INTERVAL_S=10``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMPULSE_OPERATOR_", frozen=True)

    namespaces: tuple[str, ...] = Field(
        (),
        description="Namespaces to watch (JSON list); empty watches every namespace, which the "
        "chart's ClusterRole allows.",
    )
    field_manager: str = Field(
        "streampulse-operator",
        min_length=1,
        description="Server-side apply field manager: owns every field the operator sets.",
    )
    resync_interval_s: float = Field(
        10.0,
        gt=0,
        description="Seconds between resync passes over every resource. Repairs drift (an "
        "edited or deleted child) and refreshes status; 10 s keeps repairs well under 30 s.",
    )
    pending_resync_interval_s: float = Field(
        2.0,
        gt=0,
        description="Seconds between reconciles of a resource that is not Ready yet: a child "
        "turning ready (Kafka, for the workers waiting on it) is acted on within this time.",
    )
    apply_concurrency: int = Field(
        8, ge=1, le=64, description="API requests in flight per resource while reconciling."
    )
    api_timeout_s: float = Field(
        15.0, gt=0, description="Timeout of one API request (and of a connect), in seconds."
    )
    watch_server_timeout_s: int = Field(
        300,
        ge=10,
        description="Seconds the API server keeps one watch request open; the client gives up "
        "30 s later, so a half-open watch connection is replaced within that time.",
    )
    watch_stall_s: float = Field(
        60.0,
        gt=0,
        description="A change the resync listed but the watch has not delivered for this long "
        "means the watch is stuck: the liveness probe fails and the kubelet restarts the pod.",
    )
    health_host: str = Field(
        "0.0.0.0",  # noqa: S104 - the probe must reach it from the kubelet
        description="Bind address of the liveness endpoint.",
    )
    health_port: int = Field(
        8080, ge=0, le=65535, description="Port of the liveness endpoint (/healthz); 0: off."
    )
    log_format: Literal["json", "text"] = Field(
        "text", description="json in the cluster (the chart sets it), readable text locally."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of the operator's own logs."
    )
