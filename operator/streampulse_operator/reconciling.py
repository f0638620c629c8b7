"""Reconciling one StreamPulse: observe its children, apply the rendered ones server-side (in
dependency order), prune the ones no longer declared, hand model replicas to their HPAs and
compute the status. The only module that changes objects through the API server; library errors
become per-child messages here and never stop the other children.

One reconcile:

1. **observe**: list this owner's children of every listed kind by label (a kind the API server
   does not serve answers 404: its CRD is missing, reported as ``DependencyMissing``);
2. **apply**: every rendered child whose kind is served, except children of a component that
   waits for its dependencies (``status.DEPENDS_ON``) and has not been created yet;
3. **scale**: a model Deployment below its HPA's minimum (new, or resumed) is raised through the
   ``/scale`` subresource, to the count it had before a suspension if that is higher. That count
   stays in an annotation until the Deployment has reached it, so a lost write or an autoscaler
   acting on the count before it (a race the next round would otherwise not see) is corrected;
4. **prune**: children of this owner that are no longer rendered are deleted;
5. **status**: from the objects the apply returned (or observed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import CascadeType, PatchType

from streampulse_operator import kinds
from streampulse_operator.manifests import Manifest, render
from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.lakehouse import ACCESS_KEY, SECRET_KEY, credentials_secret_name
from streampulse_operator.manifests.models import HPA_MANAGED, RESUME_REPLICAS
from streampulse_operator.settings import OperatorSettings
from streampulse_operator.spec import Owner, StreamPulseSpec
from streampulse_operator.status import (
    DEPENDS_ON,
    Observation,
    child_state,
    component_of,
    key_of,
    summarize,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
NOT_FOUND = 404
CONFLICT = 409
TOO_MANY_REQUESTS = 429
LIST_ATTEMPTS, LIST_RETRY_S = 3, 0.3  # a list the API server refuses for now is asked again
# The /scale writes have a field manager of their own: an Update, never the Apply that owns the
# rest of the Deployment, so a later apply without replicas leaves them to the HPA.
SCALE_FIELD_MANAGER_SUFFIX = "-scale"


class ReconcileError(RuntimeError):
    """This round of reconciling could not run (the children could not be observed); the
    next round tries again and the status is left as it was."""


class InvalidSpec(ReconcileError):
    """The resource's spec does not render (the CRD's validation should have refused it)."""


@dataclass
class Outcome:
    status: dict[str, Any]
    applied: int = 0
    pruned: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


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


def _not_served(exc: BaseException) -> bool:
    """A 404 on a list: the API server does not serve that kind (its CRD is not installed). It
    answers in plain text, which lightkube passes on as httpx's error, not as an ApiError."""
    if isinstance(exc, ApiError):
        return _status_code(exc) == NOT_FOUND
    response = getattr(exc, "response", None)
    return (
        isinstance(exc, httpx2.HTTPStatusError)
        and response is not None
        and (response.status_code == NOT_FOUND)
    )


def _replicas(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("spec") or {}).get("replicas") or 0)


def waiting_components(
    manifests: Iterable[Manifest], live: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, list[str]]:
    """Components whose children are not created yet while a dependency is not ready."""
    states: dict[str, list[bool]] = {}
    started: set[str] = set()
    for manifest in manifests:
        component = component_of(manifest)
        key = key_of(manifest)
        if live.get(key) is not None:
            started.add(component)
        if manifest["kind"] in {"Kafka", "KafkaTopic", "StatefulSet", "Job"}:
            states.setdefault(component, []).append(child_state(manifest, live.get(key)).ready)
    ready = {name for name, values in states.items() if all(values)}
    ready |= {name for name in ("Kafka", "Lakehouse") if name not in states}  # external
    return {
        component: [f"{dep}Ready" for dep in deps if dep not in ready]
        for component, deps in DEPENDS_ON.items()
        if component not in started and not set(deps) <= ready
    }


class Reconciler:
    def __init__(self, client: AsyncClient, settings: OperatorSettings) -> None:
        self.client = client
        self.settings = settings
        self._limit = asyncio.Semaphore(settings.apply_concurrency)
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, uid: str) -> asyncio.Lock:
        """One reconcile at a time per resource (the handlers and the resync loop share it)."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)

    async def reconcile(self, resource: Mapping[str, Any]) -> Outcome:
        owner = owner_of(resource)
        try:
            spec = StreamPulseSpec.model_validate(resource.get("spec") or {})
            manifests = render(owner, spec)
        except ValueError as exc:
            raise InvalidSpec(f"the spec does not render: {exc}") from exc
        try:
            live, missing_kinds = await self.observe(owner)
        except (ApiError, httpx2.HTTPError) as exc:
            raise ReconcileError(f"observing the children failed: {exc}") from exc
        missing = {
            key_of(m): f"{m['apiVersion']} {m['kind']}"
            for m in manifests
            if (m["apiVersion"], m["kind"]) in missing_kinds
        }
        waiting = waiting_components(manifests, live)
        to_apply = [
            m for m in manifests if key_of(m) not in missing and component_of(m) not in waiting
        ]
        errors: dict[str, str] = {}
        if spec.lakehouse.mode == "Managed":
            try:
                await self.ensure_credentials(owner, spec)
            except ApiError as exc:
                errors[f"Secret/{credentials_secret_name(owner, spec)}"] = exc.status.message or ""
        targets = autoscaled_targets(manifests, live)
        results = await self._gather(
            lambda m: self.apply(m, live.get(key_of(m)), targets.get(key_of(m), 0)), to_apply
        )
        after = dict(live)
        for manifest, result in zip(to_apply, results, strict=True):
            if isinstance(result, BaseException):
                errors[key_of(manifest)] = str(result)
            else:
                after[key_of(manifest)] = result
        await self.hand_to_autoscalers(manifests, targets, after, errors)
        desired = {key_of(m) for m in manifests}
        pruned = await self.prune(owner, desired, live)
        seen = Observation(
            live=after,
            apply_errors={k: v for k, v in errors.items() if k in desired},
            missing_apis=missing,
            waiting=waiting,
        )
        previous = (resource.get("status") or {}).get("conditions") or []
        status = summarize(
            owner, spec, manifests, seen, previous_conditions=previous, now=now_rfc3339()
        )
        return Outcome(status=status, applied=len(to_apply), pruned=pruned, errors=errors)

    async def _gather(
        self, call: Callable[[Manifest], Awaitable[T]], items: list[Manifest]
    ) -> list[T | BaseException]:
        async def limited(item: Manifest) -> T:
            async with self._limit:
                return await call(item)

        return await asyncio.gather(*(limited(i) for i in items), return_exceptions=True)

    # -- observe --------------------------------------------------------------------------------

    async def observe(
        self, owner: Owner
    ) -> tuple[dict[str, dict[str, Any] | None], set[tuple[str, str]]]:
        """This owner's children by ``Kind/name``, and the kinds the API server does not serve."""
        selector: dict[str, Any] = {
            c.INSTANCE_LABEL: owner.name,
            "app.kubernetes.io/managed-by": c.MANAGED_BY,
        }

        async def listed(kind: kinds.ChildKind) -> list[dict[str, Any]]:
            cls = kinds.resource_class(kind)
            for attempt in range(LIST_ATTEMPTS):
                try:
                    async with self._limit:
                        listing = self.client.list(cls, namespace=owner.namespace, labels=selector)
                        return [dict(o) async for o in listing]
                except ApiError as exc:
                    # 429, or 503 "storage is (re)initializing" of a CRD just installed
                    if _status_code(exc) < TOO_MANY_REQUESTS or attempt == LIST_ATTEMPTS - 1:
                        raise
                await asyncio.sleep(LIST_RETRY_S * (attempt + 1))
            raise AssertionError("unreachable")

        found = await asyncio.gather(
            *(listed(k) for k in kinds.LISTED_KINDS), return_exceptions=True
        )
        live: dict[str, dict[str, Any] | None] = {}
        missing: set[tuple[str, str]] = set()
        for kind, result in zip(kinds.LISTED_KINDS, found, strict=True):
            if isinstance(result, BaseException) and _not_served(result):
                missing.add((kind.api_version, kind.kind))
                continue
            if isinstance(result, BaseException):
                raise result
            for obj in result:
                owners = {ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []}
                if owner.uid in owners:
                    live[f"{kind.kind}/{obj['metadata']['name']}"] = obj
        return live, missing

    # -- apply ----------------------------------------------------------------------------------

    async def apply(
        self, manifest: Manifest, live: Mapping[str, Any] | None, target: int = 0
    ) -> dict[str, Any]:
        """Apply one child; an autoscaled Deployment keeps its count before a suspension in an
        annotation while suspended, and while it is below ``target`` after the resume."""
        kind = kinds.child_kind(manifest["apiVersion"], manifest["kind"])
        body = manifest
        annotations = manifest["metadata"].get("annotations") or {}
        if annotations.get(HPA_MANAGED) == "true":
            body = _remember_replicas(manifest, live, target)
        try:
            applied = await self.client.apply(
                kinds.resource_class(kind)(**body),
                field_manager=self.settings.field_manager,
                force=True,
            )
        except ApiError as exc:
            raise ReconcileError(
                f"applying {key_of(manifest)} failed: {exc.status.message}"
            ) from exc
        return dict(applied)

    async def hand_to_autoscalers(
        self,
        manifests: Iterable[Manifest],
        targets: Mapping[str, int],
        after: Mapping[str, Mapping[str, Any] | None],
        errors: dict[str, str],
    ) -> None:
        """Raise each autoscaled Deployment below its target (``autoscaled_targets``) to it."""
        for hpa in (m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]["name"]
            key = f"Deployment/{target}"
            current = after.get(key)
            wanted = targets.get(key, 0)
            if current is None or _replicas(current) >= wanted:
                continue
            try:
                await self.client.patch(
                    Deployment.Scale,
                    target,
                    {"spec": {"replicas": wanted}},
                    namespace=hpa["metadata"]["namespace"],
                    patch_type=PatchType.MERGE,
                    field_manager=self.settings.field_manager + SCALE_FIELD_MANAGER_SUFFIX,
                )
            except ApiError as exc:
                errors[key] = f"scaling {key} to {wanted} failed: {exc.status.message}"
            else:
                logger.info("scaled %s to %d for its autoscaler", key, wanted)

    async def ensure_credentials(self, owner: Owner, spec: StreamPulseSpec) -> None:
        """Create MinIO's credentials once, with random values; they live only in the Secret.

        Create-only: an existing Secret answers 409 and is left as it is. The operator never
        reads a Secret (it is not allowed to)."""
        name = credentials_secret_name(owner, spec)
        cls = kinds.resource_class(kinds.child_kind("v1", "Secret"))
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
            if _status_code(exc) == CONFLICT:
                return
            raise
        logger.info("created lakehouse credentials Secret %s/%s", owner.namespace, name)

    # -- prune ----------------------------------------------------------------------------------

    async def prune(
        self, owner: Owner, desired: set[str], live: Mapping[str, Mapping[str, Any] | None]
    ) -> list[str]:
        """Delete children of this owner that are no longer declared."""
        pruned: list[str] = []
        for key, obj in live.items():
            if key in desired or obj is None:
                continue
            kind_name, name = key.split("/", 1)
            kind = next(k for k in kinds.LISTED_KINDS if k.kind == kind_name)
            try:
                await self.client.delete(
                    kinds.resource_class(kind),
                    name,
                    namespace=owner.namespace,
                    cascade=CascadeType.BACKGROUND,
                )
            except ApiError as exc:
                if _status_code(exc) != NOT_FOUND:
                    logger.warning("pruning %s failed: %s", key, exc.status.message)
                    continue
            pruned.append(key)
        if pruned:
            logger.info("pruned %s from %s/%s", ", ".join(pruned), owner.namespace, owner.name)
        return pruned


def remembered_replicas(live: Mapping[str, Any] | None) -> int:
    annotations = (live or {}).get("metadata", {}).get("annotations") or {}
    return int(annotations.get(RESUME_REPLICAS) or 0)


def autoscaled_targets(
    manifests: Iterable[Manifest], live: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, int]:
    """The count each autoscaled Deployment is raised to: its HPA's minimum, or its count
    before a suspension (remembered on the live object) within the HPA's bounds."""
    targets: dict[str, int] = {}
    for hpa in (m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"):
        key = f"Deployment/{hpa['spec']['scaleTargetRef']['name']}"
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        targets[key] = max(low, min(high, remembered_replicas(live.get(key))))
    return targets


def _remember_replicas(manifest: Manifest, live: Mapping[str, Any] | None, target: int) -> Manifest:
    """The annotation an autoscaled Deployment is applied with. Suspended (the manifest holds it
    at zero): the HPA's count, taken from the running Deployment or carried over. Running: the
    remembered count, carried over only while the Deployment is below its target, so the
    operator keeps raising it until it gets there and then leaves it to the HPA."""
    remembered = remembered_replicas(live)
    have = _replicas(live)
    if "replicas" in manifest["spec"]:
        count = have or remembered
    else:
        count = remembered if remembered and have < target else 0
    if not count:
        return manifest
    meta = manifest["metadata"]
    return {
        **manifest,
        "metadata": {
            **meta,
            "annotations": {**meta.get("annotations", {}), RESUME_REPLICAS: str(count)},
        },
    }
