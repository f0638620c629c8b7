"""``python -m tests.harness.images <command>``: the project's images, built here offline.

build   build the images from the checkout (all, or --only NAME ...) and print their timings
stage   fetch (or find cached) what the builds stage: wheelhouses, jars, dictionary, models
list    the images: name, tag, Dockerfile, uid
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.harness.cluster.bases import BASES, ensure_base
from tests.harness.cluster.common import ClusterError, Progress, default_cache_dir
from tests.harness.cluster.engine import ensure_engine
from tests.harness.images.building import BUILDERS, REPO, build_images, image_names
from tests.harness.images.flinkbase import FLINK_OS
from tests.harness.images.recipes import IMAGES
from tests.harness.images.running import python_version_of
from tests.harness.images.staging import WHEELHOUSES, Stager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the images from the checkout")
    build.add_argument(
        "--only", action="append", choices=sorted(IMAGES), help="this image only (repeatable)"
    )
    build.add_argument(
        "--builder",
        choices=BUILDERS,
        default="classic",
        help="the engine's classic builder (default) or BuildKit (a 20.10-22.x client)",
    )
    build.add_argument(
        "--no-cache", action="store_true", help="rebuild every step (a cold build of the images)"
    )
    sub.add_parser("stage", help="fetch or find every staged input")
    sub.add_parser("list", help="the images")
    args = parser.parse_args(argv)
    cache_dir = default_cache_dir()
    say = Progress(prefix="images")
    try:
        if args.command == "build":
            started = time.monotonic()
            results = build_images(
                cache_dir,
                image_names(args.only),
                builder=args.builder,
                no_cache=args.no_cache,
                say=say,
            )
            print(f"{'image':10} {'tag':48} {'build s':>8} {'size MB':>8}  rebuilt")
            for result in results.values():
                print(
                    f"{result.name:10} {result.tag:48} {result.seconds:8.1f} "
                    f"{result.size_bytes / 1e6:8.0f}  {'yes' if result.rebuilt else 'no'}"
                )
            print(f"total {time.monotonic() - started:.1f}s (staging and bases included)")
        elif args.command == "stage":
            engine = ensure_engine(cache_dir, say)
            python = python_version_of(engine, ensure_base(engine, BASES["python"], cache_dir, say))
            flink_python = python_version_of(engine, ensure_base(engine, FLINK_OS, cache_dir, say))
            stager = Stager(repo=REPO, cache_dir=cache_dir, say=say)
            for name in WHEELHOUSES:
                version = flink_python if name == "flink" else python
                print(f"wheels {name:9} {stager.wheelhouse(name, version)}")
            print(f"flink jars       {stager.flink_jars()}")
            print(f"flink dist       {stager.flink_dist(flink_python)}")
            print(f"dictionary       {stager.dictionary()}")
            print(f"models           {stager.models()}")
        else:
            for recipe in IMAGES.values():
                print(f"{recipe.name:10} {recipe.tag:48} {recipe.dockerfile:26} uid {recipe.uid}")
    except ClusterError as exc:
        say(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
