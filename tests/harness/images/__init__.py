"""The project's images built on this machine, offline, from the checkout (docs/images.md).

    results = build_images(cache_dir, only=["workers"])   # {"workers": ImageResult(...)}
    results["workers"].tag, results["workers"].seconds, results["workers"].size_bytes

``python -m tests.harness.images build [--only NAME]`` does the same from a shell.
"""

from tests.harness.images.building import Builder, ImageResult, build_image, build_images
from tests.harness.images.flinkbase import ensure_flink_base, flink_base_tag
from tests.harness.images.recipes import IMAGES, ImageRecipe
from tests.harness.images.staging import Stager

__all__ = [
    "IMAGES",
    "Builder",
    "ImageRecipe",
    "ImageResult",
    "Stager",
    "build_image",
    "build_images",
    "ensure_flink_base",
    "flink_base_tag",
]
