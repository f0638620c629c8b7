"""Reconciling one StreamPulse: render its children, apply them server-side, prune the ones no
longer declared, read the children back and compute the status. The only module that talks to
the API server; library errors become ``ReconcileError`` here."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from lightkube import ApiError, AsyncClient
from lightkube.types import CascadeType

from streampulse_operator import kinds
from streampulse_operator.manifests import Manifest, render
from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.lakehouse import ACCESS_KEY, SECRET_KEY, credentials_secret_name
from streampulse_operator.manifests.models import HPA_MANAGED
from streampulse_operator.settings import OperatorSettings
from streampulse_operator.spec import Owner, StreamPulseSpec
from streampulse_operator.status import READINESS_KINDS, key_of, summarize

logger = logging.getLogger(__name__)
T = TypeVar("T")
NOT_FOUND = 404
TOO_MANY_REQUESTS = 429


class ReconcileError(RuntimeError):
    """Children could not be applied; the message says which and why (never with values)."""


@dataclass
class Outcome:
    status: dict[str, Any]
    applied: int = 0
    pruned: list[str] = field(default_factory=list)


def owner_of(resource: Mapping[str, Any]) -> Owner:
    meta = resource["metadata"]
    return Owner(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _status_code(exc: ApiError) -> int:
    return int(exc.status.code or 0)


class Reconciler:
    def __init__(self, client: AsyncClient, settings: OperatorSettings) -> None:
        self.client = client
        self.settings = settings
        self._limit = asyncio.Semaphore(settings.apply_concurrency)

    async def reconcile(self, resource: Mapping[str, Any]) -> Outcome:
        owner = owner_of(resource)
        spec = StreamPulseSpec.model_validate(resource.get("spec") or {})
        manifests = render(owner, spec)
        if spec.lakehouse.mode == "Managed":
            await self.ensure_credentials(owner, spec)
        errors = [
            e for e in await self._gather(self.apply, manifests) if isinstance(e, BaseException)
        ]
        if errors:
            raise ReconcileError("; ".join(str(e) for e in errors[:5]))
        desired = {key_of(m) for m in manifests}
        if spec.lakehouse.mode == "Managed":
            desired.add(f"Secret/{credentials_secret_name(owner, spec)}")
        pruned = await self.prune(owner, desired)
        watched = [m for m in manifests if m["kind"] in READINESS_KINDS]
        observed = await self._gather(self.read, watched)
        live = {
            key_of(m): (None if isinstance(o, BaseException) else o)
            for m, o in zip(watched, observed, strict=True)
        }
        previous = (resource.get("status") or {}).get("conditions") or []
        status = summarize(
            owner, spec, manifests, live, previous_conditions=previous, now=now_rfc3339()
        )
        return Outcome(status=status, applied=len(manifests), pruned=pruned)

    async def _gather(
        self, call: Callable[[Manifest], Awaitable[T]], items: list[Manifest]
    ) -> list[T | BaseException]:
        async def limited(item: Manifest) -> T:
            async with self._limit:
                return await call(item)

        return await asyncio.gather(*(limited(i) for i in items), return_exceptions=True)

    async def apply(self, manifest: Manifest) -> None:
        kind = kinds.child_kind(manifest["apiVersion"], manifest["kind"])
        cls = kinds.resource_class(kind)
        meta = manifest["metadata"]
        body = manifest
        if meta.get("annotations", {}).get(HPA_MANAGED) == "true":
            live = await self.read(manifest)
            if live is not None and int(live.get("spec", {}).get("replicas") or 0) > 0:
                # The HPA owns spec.replicas of a running Deployment; only (re)starts set it.
                body = {
                    **manifest,
                    "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"},
                }
        try:
            await self.client.apply(
                cls(**body), field_manager=self.settings.field_manager, force=True
            )
        except ApiError as exc:
            raise ReconcileError(
                f"applying {key_of(manifest)} failed: {exc.status.message}"
            ) from exc

    async def read(self, manifest: Manifest) -> dict[str, Any] | None:
        kind = kinds.child_kind(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        try:
            obj = await self.client.get(
                kinds.resource_class(kind), meta["name"], namespace=meta["namespace"]
            )
        except ApiError as exc:
            if _status_code(exc) == NOT_FOUND:
                return None
            raise
        return dict(obj)

    async def ensure_credentials(self, owner: Owner, spec: StreamPulseSpec) -> None:
        """Create MinIO's credentials once, with random values; they live only in the Secret."""
        name = credentials_secret_name(owner, spec)
        secret_kind = kinds.child_kind("v1", "Secret")
        cls = kinds.resource_class(secret_kind)
        try:
            await self.client.get(cls, name, namespace=owner.namespace)
            return
        except ApiError as exc:
            if _status_code(exc) != NOT_FOUND:
                raise
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": c.metadata(owner, name, "minio"),
            "type": "Opaque",
            "stringData": {
                ACCESS_KEY: f"streampulse-{secrets.token_hex(6)}",
                SECRET_KEY: secrets.token_urlsafe(32),
            },
        }
        try:
            await self.client.create(cls(**secret), field_manager=self.settings.field_manager)
        except ApiError as exc:
            if _status_code(exc) != 409:  # created concurrently: fine
                raise
        logger.info("created lakehouse credentials Secret %s/%s", owner.namespace, name)

    async def prune(self, owner: Owner, desired: set[str]) -> list[str]:
        """Delete children of this owner that are no longer declared."""
        selector: dict[str, Any] = {
            c.INSTANCE_LABEL: owner.name,
            "app.kubernetes.io/managed-by": c.MANAGED_BY,
        }
        pruned: list[str] = []
        for kind in kinds.CHILD_KINDS:
            cls = kinds.resource_class(kind)
            try:
                found = [
                    dict(o)
                    async for o in self.client.list(cls, namespace=owner.namespace, labels=selector)
                ]
            except ApiError as exc:
                # 404: that API is not installed; 429/5xx: try again on the next resync
                if _status_code(exc) == NOT_FOUND or _status_code(exc) >= TOO_MANY_REQUESTS:
                    logger.debug("not pruning %s now: %s", kind.kind, exc.status.message)
                    continue
                raise
            for obj in found:
                meta = obj["metadata"]
                key = f"{kind.kind}/{meta['name']}"
                owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
                if key in desired or owner.uid not in owners:
                    continue
                try:
                    await self.client.delete(
                        cls, meta["name"], namespace=owner.namespace, cascade=CascadeType.BACKGROUND
                    )
                except ApiError as exc:
                    if _status_code(exc) != NOT_FOUND:
                        raise
                pruned.append(key)
        if pruned:
            logger.info("pruned %s from %s/%s", ", ".join(pruned), owner.namespace, owner.name)
        return pruned
