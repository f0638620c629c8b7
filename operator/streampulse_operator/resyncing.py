"""The periodic resync, and how the operator knows its watch is healthy.

kopf reacts to changes through its watch (create, update, resume handlers). Drift (an edited or
deleted child) and the children's progress do not change the StreamPulse, so a loop reconciles
every resource every ``resync_interval_s`` as well. It is one operator-wide task, not a per-object
kopf timer: per-object timers make kopf put a finalizer on every StreamPulse, and then
``kubectl delete`` hangs whenever the operator is not running (after ``helm uninstall``, or while
it restarts). Without a finalizer, deleting a StreamPulse needs nothing from the operator: its
children go with it through their owner references.

The resync lists the resources from the API server; kopf's watch reports every event it
delivers (``WatchHealth.watched``). A resource whose listed resourceVersion the watch has not
delivered for ``watch_stall_s`` means the watch is stuck (a half-open connection that never
errors): the liveness probe then fails and the kubelet restarts the operator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.types import PatchType

from streampulse_operator import kinds
from streampulse_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)
Reconcile = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class WatchHealth:
    """Compares what the watch delivered with what a list returns, per resource."""

    def __init__(self, stall_after_s: float, resync_stale_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self.resync_stale_after_s = resync_stale_after_s
        self._delivered: dict[str, str] = {}
        self._behind_since: dict[str, float] = {}
        self._last_resync = time.monotonic()

    def watched(self, uid: str, resource_version: str) -> None:
        self._delivered[uid] = resource_version

    def forget(self, uid: str) -> None:
        self._delivered.pop(uid, None)
        self._behind_since.pop(uid, None)

    def listed(self, uid: str, resource_version: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._delivered.get(uid) == resource_version:
            self._behind_since.pop(uid, None)
        else:
            self._behind_since.setdefault(uid, now)

    def resynced(self, now: float | None = None) -> None:
        self._last_resync = time.monotonic() if now is None else now

    def problems(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        found = [
            f"the watch has not delivered a change of {uid} listed {now - since:.0f} s ago"
            for uid, since in self._behind_since.items()
            if now - since > self.stall_after_s
        ]
        if now - self._last_resync > self.resync_stale_after_s:
            found.append(f"no resync finished for {now - self._last_resync:.0f} s")
        return found


def _ready(resource: Mapping[str, Any]) -> bool | None:
    for condition in (resource.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return None


class Resync:
    """Reconciles every StreamPulse the operator watches, every ``resync_interval_s`` (and the
    ones not yet Ready every ``pending_resync_interval_s``)."""

    def __init__(
        self,
        client: AsyncClient,
        settings: OperatorSettings,
        health: WatchHealth,
        reconcile: Reconcile,
    ) -> None:
        self.client = client
        self.settings = settings
        self.health = health
        self.reconcile = reconcile
        self._class = kinds.resource_class(kinds.STREAMPULSE)
        self._last: dict[str, float] = {}

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except ApiError as exc:
                logger.warning("resync failed: %s", exc.status.message)
            except Exception:
                logger.exception("resync failed")
            await asyncio.sleep(self.settings.pending_resync_interval_s)

    def _due(self, resource: Mapping[str, Any], now: float) -> bool:
        """Every resource once per resync interval; one that is not Ready (children starting,
        components waiting for their dependencies) every pending interval, so a child turning
        ready is acted on within seconds."""
        last = self._last.get(resource["metadata"]["uid"])
        if last is None or now - last >= self.settings.resync_interval_s:
            return True
        return _ready(resource) is not True

    async def run_once(self) -> int:
        """One pass over the resources that are due; returns how many were reconciled."""
        resources = await self._list()
        reconciled = 0
        now = time.monotonic()
        for resource in resources:
            meta = resource["metadata"]
            self.health.listed(meta["uid"], meta["resourceVersion"])
            if meta.get("deletionTimestamp") or not self._due(resource, now):
                continue
            self._last[meta["uid"]] = now
            status = await self.reconcile(resource)
            reconciled += 1
            if status is not None and status != resource.get("status"):
                await self._write_status(resource, status)
        listed = {r["metadata"]["uid"] for r in resources}
        self._last = {uid: t for uid, t in self._last.items() if uid in listed}
        self.health.resynced()
        return reconciled

    async def _list(self) -> list[dict[str, Any]]:
        namespaces = self.settings.namespaces or (ALL_NS,)
        found: list[dict[str, Any]] = []
        for namespace in namespaces:
            found.extend(
                [dict(o) async for o in self.client.list(self._class, namespace=namespace)]
            )
        return found

    async def _write_status(self, resource: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = resource["metadata"]
        try:
            await self.client.patch(
                self._class.Status,
                meta["name"],
                {"status": status},
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
                field_manager=self.settings.field_manager,
            )
        except ApiError as exc:
            if int(exc.status.code or 0) != 404:  # deleted meanwhile: fine
                raise
