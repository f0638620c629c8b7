"""kopf handlers, kept thin: they hand the object to the ``Reconciler`` and write back the status
it computed. ``register`` builds them into a registry with the intervals from the settings.

No handler needs a finalizer (no timers, daemons or deletion handlers), so kopf puts none on a
StreamPulse and deleting one never waits for the operator; the periodic resync is one task for
the whole operator (``resyncing.Resync``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from streampulse_operator.announcing import announce
from streampulse_operator.kinds import STREAMPULSE
from streampulse_operator.reconciling import (
    InvalidSpec,
    ReconcileError,
    Reconciler,
    now_rfc3339,
    owner_of,
)
from streampulse_operator.resyncing import Resync, WatchHealth
from streampulse_operator.settings import OperatorSettings
from streampulse_operator.status import failed_status

logger = logging.getLogger(__name__)
RESOURCE = (STREAMPULSE.group, STREAMPULSE.version, STREAMPULSE.plural)
RETRY_DELAY_S = 2.0  # a handler whose round could not run is retried this soon


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, detached copy of a kopf body (its nested values may be views)."""
    copied: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return copied


async def reconcile_resource(reconciler: Reconciler, resource: dict[str, Any]) -> dict[str, Any]:
    """Reconcile under the resource's lock; the new status. Raises ``ReconcileError`` when this
    round could not run."""
    before = resource.get("status")
    async with reconciler.lock(resource["metadata"]["uid"]):
        try:
            status = (await reconciler.reconcile(resource)).status
        except InvalidSpec as exc:
            logger.warning("%s: %s", resource["metadata"]["name"], exc)
            status = failed_status(owner_of(resource), str(exc), now_rfc3339())
    await announce(reconciler.client, resource, before, status)
    return status


async def resync_resource(
    reconciler: Reconciler, resource: dict[str, Any]
) -> dict[str, Any] | None:
    """For the resync loop: a round that could not run leaves the status as it was."""
    try:
        return await reconcile_resource(reconciler, resource)
    except ReconcileError as exc:
        logger.warning("reconciling %s: %s", resource["metadata"]["name"], exc)
        return None


async def reconcile_body(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    try:
        status = await reconcile_resource(memo.reconciler, plain(body))
    except ReconcileError as exc:  # e.g. a kind's storage still initializing: soon again
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from exc
    for key, value in status.items():
        patch.status[key] = value


def register() -> kopf.OperatorRegistry:
    """The operator's handlers; the intervals come from the settings in the memo."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        operator: OperatorSettings = memo.settings
        prefix = STREAMPULSE.group
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=prefix, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING
        # No watching of CRDs or namespaces (the chart grants neither): the StreamPulse CRD is
        # installed with the chart, and the namespaces are the settings' exact names.
        settings.scanning.disabled = True
        # A watch ends on the server's side after server_timeout and on ours at the latest
        # after client_timeout, so a half-open connection cannot stall it for longer.
        settings.watching.server_timeout = operator.watch_server_timeout_s
        settings.watching.client_timeout = operator.watch_server_timeout_s + 30
        settings.watching.connect_timeout = operator.api_timeout_s
        settings.networking.connect_timeout = operator.api_timeout_s
        settings.networking.request_timeout = operator.api_timeout_s * 4
        client = AsyncClient(
            KubeConfig.from_env(), field_manager=operator.field_manager, lazy=False
        )
        reconciler = Reconciler(client, operator)
        health = WatchHealth(
            stall_after_s=operator.watch_stall_s,
            resync_stale_after_s=operator.resync_interval_s * 3 + operator.api_timeout_s * 4,
        )
        memo.reconciler, memo.health = reconciler, health
        resync = Resync(client, operator, health, lambda r: resync_resource(reconciler, r))
        memo.resync = asyncio.create_task(resync.run_forever(), name="streampulse-resync")

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod the service account; elsewhere the kubeconfig (KUBECONFIG)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        task: asyncio.Task[None] | None = memo.get("resync")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        reconciler: Reconciler | None = memo.get("reconciler")
        if reconciler is not None:
            await reconciler.client.close()

    @kopf.on.probe(id="watch", registry=registry)
    def watch_is_healthy(memo: kopf.Memo, **_: Any) -> str:
        health: WatchHealth | None = memo.get("health")
        problems = health.problems() if health is not None else ["not started"]
        if problems:
            raise kopf.PermanentError("; ".join(problems))
        return "ok"

    @kopf.on.event(*RESOURCE, registry=registry)
    def delivered(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        health: WatchHealth | None = memo.get("health")
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if health is None or "uid" not in meta:
            return
        if event.get("type") == "DELETED":
            health.forget(meta["uid"])
            memo.reconciler.forget(meta["uid"])
        else:
            health.watched(meta["uid"], meta.get("resourceVersion", ""))

    @kopf.on.create(*RESOURCE, registry=registry, backoff=3)
    @kopf.on.update(*RESOURCE, registry=registry, backoff=3)
    @kopf.on.resume(*RESOURCE, registry=registry, backoff=3)
    async def on_change(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        await reconcile_body(body, patch, memo)

    return registry
