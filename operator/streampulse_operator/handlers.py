"""kopf handlers, kept thin: they hand the object to the ``Reconciler`` and write back the status
it computed. ``register`` builds them into a registry with the intervals from the settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from streampulse_operator.kinds import STREAMPULSE
from streampulse_operator.reconciling import ReconcileError, Reconciler, now_rfc3339, owner_of
from streampulse_operator.settings import OperatorSettings
from streampulse_operator.status import failed_status

logger = logging.getLogger(__name__)
RESOURCE = (STREAMPULSE.group, STREAMPULSE.version, STREAMPULSE.plural)


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, detached copy of a kopf body (its nested values may be views)."""
    copied: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return copied


def _conditions(status: Mapping[str, Any] | None) -> dict[str, str]:
    items = (status or {}).get("conditions") or []
    return {str(x.get("type")): str(x.get("status")) for x in items}


def announce_transitions(
    body: kopf.Body, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> None:
    """Post a Kubernetes Event for each condition that changed and for a new phase."""
    old, new = _conditions(before), _conditions(after)
    for kind, status in new.items():
        if old.get(kind) != status:
            kind_type = "Normal" if status == "True" else "Warning"
            if kind != "Ready" and kind_type == "Warning" and kind not in old:
                continue  # a component starting up is not news
            message = next(x["message"] for x in after["conditions"] if x["type"] == kind)
            kopf.event(body, type=kind_type, reason=kind, message=f"{kind}={status}: {message}")
    phase_before = (before or {}).get("phase")
    if after.get("phase") != phase_before:
        kopf.info(body, reason="Phase", message=f"phase {phase_before} -> {after.get('phase')}")


async def reconcile_body(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    resource = plain(body)
    reconciler: Reconciler = memo.reconciler
    before = resource.get("status")
    try:
        outcome = await reconciler.reconcile(resource)
        status = outcome.status
    except ReconcileError as exc:
        logger.warning("reconciling %s failed: %s", body.meta.name, exc)
        status = failed_status(owner_of(resource), str(exc), now_rfc3339())
    announce_transitions(body, before, status)
    for key, value in status.items():
        patch.status[key] = value


def register(settings: OperatorSettings) -> kopf.OperatorRegistry:
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
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = operator.api_timeout_s * 4
        memo.reconciler = Reconciler(
            AsyncClient(
                KubeConfig.from_env(),
                field_manager=operator.field_manager,
                lazy=False,
            ),
            operator,
        )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod the service account; elsewhere the kubeconfig (KUBECONFIG)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        reconciler: Reconciler | None = memo.get("reconciler")
        if reconciler is not None:
            await reconciler.client.close()

    @kopf.on.create(*RESOURCE, registry=registry, backoff=3)
    @kopf.on.update(*RESOURCE, registry=registry, backoff=3)
    @kopf.on.resume(*RESOURCE, registry=registry, backoff=3)
    async def on_change(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        await reconcile_body(body, patch, memo)

    @kopf.timer(*RESOURCE, interval=settings.resync_interval_s, registry=registry, backoff=3)
    async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        await reconcile_body(body, patch, memo)

    return registry
