"""The ``streampulse`` command: one entrypoint per process kind.

Each command builds the process's one ``Settings`` object, applies its flags on top, configures
logging, and hands the settings down. Nothing below this module reads the environment.
"""

from __future__ import annotations

import typer

from streampulse.logs import configure_logging
from streampulse.settings import Settings

app = typer.Typer(
    help="StreamPulse: real-time analytics of the Bluesky firehose.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def main() -> None:
    """Console-script entrypoint."""
    app()
