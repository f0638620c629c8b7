"""Jetstream-compatible replay server: recorded captures and realistic synthetic streams.

Public surface: ``serve`` and ``run`` (the server), ``build_stream`` with ``Stream`` and
``StreamEvent`` (exactly what is served, in order), ``Filters`` (what a client receives of it).
"""

from __future__ import annotations

from streampulse.replay.protocol import Filters
from streampulse.replay.server import run, serve
from streampulse.replay.sources import ReplaySetupError
from streampulse.replay.streams import Stream, StreamEvent, build_stream

__all__ = ["Filters", "ReplaySetupError", "Stream", "StreamEvent", "build_stream", "run", "serve"]
