"""The project's images: Dockerfile, the tag the chart and the StreamPulse spec default to, the
uid the operator's manifests run it as, and which wheelhouse it installs from.
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY = "ghcr.io/streampulse"
TAG = "0.1.0"
"""The chart's appVersion and the StreamPulse spec's default image tag."""


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    dockerfile: str
    """Relative to the repository root, which is the build context (as in CI)."""
    tag: str
    uid: int
    """The user the image runs as, as the operator's manifests expect it."""
    wheelhouse: str
    """The staged wheelhouse (``staging.WHEELHOUSES``) copied in as ``stage-wheels/``; empty
    for an image that installs no Python packages."""
    summary: str


IMAGES: dict[str, ImageRecipe] = {
    recipe.name: recipe
    for recipe in (
        ImageRecipe(
            name="operator",
            dockerfile="operator/Dockerfile",
            tag=f"{REGISTRY}/streampulse-operator:{TAG}",
            uid=10001,
            wheelhouse="operator",
            summary="the operator (python -m streampulse_operator)",
        ),
        ImageRecipe(
            name="workers",
            dockerfile="workers/Dockerfile",
            tag=f"{REGISTRY}/streampulse:{TAG}",
            uid=10001,
            wheelhouse="workers",
            summary="streampulse ingest / enrich / replay, with the Jetstream zstd dictionary",
        ),
        ImageRecipe(
            name="models",
            dockerfile="workers/Dockerfile.models",
            tag=f"{REGISTRY}/streampulse-models:{TAG}",
            uid=10001,
            wheelhouse="workers",
            summary="streampulse serve-models with /models/{toxicity,ner,sentiment} baked in",
        ),
        ImageRecipe(
            name="flink",
            dockerfile="flink/Dockerfile",
            tag=f"{REGISTRY}/streampulse-flink:{TAG}",
            uid=9999,
            wheelhouse="flink",
            summary="Flink 2.1 with PyFlink, the connectors and the job package streampulse_flink",
        ),
        ImageRecipe(
            name="trino",
            dockerfile="operator/Dockerfile.trino",
            tag=f"{REGISTRY}/streampulse-trino:{TAG}",
            uid=1000,
            wheelhouse="",
            summary="Trino 476 (Maven Central) on Java 25 and the Iceberg REST catalog",
        ),
    )
}
