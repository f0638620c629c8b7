"""``python -m streampulse_operator``: build the settings, configure logging, run kopf."""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from streampulse_operator.handlers import register
from streampulse_operator.settings import OperatorSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: OperatorSettings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def main() -> None:
    settings = OperatorSettings()
    configure_logging(settings)
    liveness = (
        f"http://{settings.health_host}:{settings.health_port}/healthz"
        if settings.health_port
        else None
    )
    kopf.run(
        registry=register(),
        memo=kopf.Memo(settings=settings),
        standalone=True,  # one active replica: the chart runs one pod with Recreate
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=liveness,
    )


if __name__ == "__main__":
    main()
