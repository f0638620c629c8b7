"""``python -m tests.harness.cluster <command>``: the engine, base images, node image, cluster.

docker        start the project's Docker engine unless one answers (prints DOCKER_HOST)
docker-stop   stop the engine the project started, and only that one
bases         build the base images (cached by recipe hash)
check-build   docker build a trivial Dockerfile on the local Debian base, no network
components    build the node's binaries from the Go module proxy (pause from C)
node-image    build the component images and the node image
up            start the single-node cluster (builds whatever is missing); prints KUBECONFIG
down          remove the cluster: node, volume, network, kubeconfig
status        show whether the cluster is up
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.harness.cluster.bases import BASES, check_build_offline, ensure_bases
from tests.harness.cluster.cluster import Cluster, down
from tests.harness.cluster.common import ClusterError, Progress, default_cache_dir
from tests.harness.cluster.components import ensure_node_binaries
from tests.harness.cluster.engine import ensure_engine, stop_engine
from tests.harness.cluster.nodeimage import ensure_node_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("docker", help="start the project's Docker engine unless one answers")
    sub.add_parser("docker-stop", help="stop the engine the project started (only that one)")
    bases = sub.add_parser("bases", help="build the base images (cached by recipe hash)")
    bases.add_argument("names", nargs="*", help=f"recipes (default: all of {sorted(BASES)})")
    sub.add_parser("check-build", help="docker build a trivial Dockerfile with no network")
    sub.add_parser("components", help="build the node's binaries (Go module proxy, pause from C)")
    sub.add_parser("node-image", help="build the component images and the node image")
    up = sub.add_parser("up", help="start the cluster (or find it running)")
    up.add_argument("--recreate", action="store_true", help="replace a running cluster")
    sub.add_parser("down", help="remove the cluster")
    sub.add_parser("status", help="whether the cluster is up")
    args = parser.parse_args(argv)
    cache_dir = default_cache_dir()
    say = Progress()
    try:
        return _run(args, cache_dir, say)
    except ClusterError as exc:
        say(f"FAILED: {exc}")
        return 1


def _run(args: argparse.Namespace, cache_dir: Path, say: Progress) -> int:
    if args.command == "docker":
        engine = ensure_engine(cache_dir, say)
        print(f"export DOCKER_HOST={engine.host}")
    elif args.command == "docker-stop":
        stop_engine(cache_dir, say)
    elif args.command == "bases":
        engine = ensure_engine(cache_dir, say)
        names = tuple(args.names) or tuple(BASES)
        for name, tag in ensure_bases(engine, names, cache_dir, say).items():
            upstream = ", ".join(BASES[name].upstream) or "(node images only)"
            print(f"{tag:32} for {upstream}")
    elif args.command == "check-build":
        engine = ensure_engine(cache_dir, say)
        ensure_bases(engine, ("debian",), cache_dir, say)
        with tempfile.TemporaryDirectory(prefix="streampulse-build-check-") as tmp:
            print(check_build_offline(engine, Path(tmp), say), end="")
    elif args.command == "components":
        binaries = ensure_node_binaries(cache_dir, say)
        for name, path in sorted(binaries.dirs.items()):
            print(f"{name:24} {path}")
    elif args.command == "node-image":
        engine = ensure_engine(cache_dir, say)
        image = ensure_node_image(engine, cache_dir, say)
        print(f"{image.tag}  (component images: {image.images_tar})")
    elif args.command == "up":
        cluster = Cluster.up(cache_dir, say=say, reuse=not args.recreate)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "down":
        down(cache_dir, say=say)
    elif args.command == "status":
        running = Cluster.existing(cache_dir)
        if running is None:
            print("down")
            return 3
        print(f"up: {running.server}  KUBECONFIG={running.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
