"""``python -m tests.harness.cluster <command>``: the engine, base images, node image, cluster."""

from __future__ import annotations

import argparse
import sys

from tests.harness.cluster.common import ClusterError, Progress, default_cache_dir
from tests.harness.cluster.engine import ensure_engine, stop_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("docker", help="start the project's Docker engine unless one answers")
    sub.add_parser("docker-stop", help="stop the engine the project started (only that one)")
    args = parser.parse_args(argv)
    cache_dir = default_cache_dir()
    say = Progress()
    try:
        if args.command == "docker":
            engine = ensure_engine(cache_dir, say)
            print(f"export DOCKER_HOST={engine.host}")
        elif args.command == "docker-stop":
            stop_engine(cache_dir, say)
    except ClusterError as exc:
        say(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
