"""Kubernetes Events for a StreamPulse's transitions: a condition that changed, a new phase.

Posted with the operator's own client (``events`` ``create``), from the handlers and from the
resync task alike; a failed post is logged and never fails a reconcile."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient

from streampulse_operator import kinds

logger = logging.getLogger(__name__)
EVENT = kinds.ChildKind("", "v1", "Event", "events")
REPORTER = "streampulse-operator"


def _conditions(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(x.get("type")): x for x in (status or {}).get("conditions") or []}


def transitions(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of every Event a status change deserves."""
    old, new = _conditions(before), _conditions(after)
    out = []
    for kind, condition in new.items():
        status = str(condition.get("status"))
        if str((old.get(kind) or {}).get("status")) == status:
            continue
        event_type = "Normal" if status == "True" else "Warning"
        if kind != "Ready" and event_type == "Warning" and kind not in old:
            continue  # a component starting up is not news
        out.append((event_type, kind, f"{kind}={status}: {condition.get('message', '')}"))
    phase_before = (before or {}).get("phase")
    if after.get("phase") != phase_before:
        out.append(("Normal", "Phase", f"phase {phase_before} -> {after.get('phase')}"))
    return out


async def announce(
    client: AsyncClient,
    resource: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> None:
    meta = resource["metadata"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for event_type, reason, message in transitions(before, after):
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": resource.get("apiVersion", kinds.STREAMPULSE.api_version),
                "kind": resource.get("kind", kinds.STREAMPULSE.kind),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": REPORTER},
            "reportingComponent": REPORTER,
            "reportingInstance": os.environ.get("HOSTNAME", REPORTER),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await client.create(kinds.resource_class(EVENT)(**event))
        except ApiError as exc:
            logger.warning("posting event %s failed: %s", reason, exc.status.message)
