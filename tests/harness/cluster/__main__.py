"""``python -m tests.harness.cluster <command>``: the engine, base images, node image, cluster."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.harness.cluster.bases import BASES, check_build_offline, ensure_bases
from tests.harness.cluster.common import ClusterError, Progress, default_cache_dir
from tests.harness.cluster.engine import ensure_engine, stop_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("docker", help="start the project's Docker engine unless one answers")
    sub.add_parser("docker-stop", help="stop the engine the project started (only that one)")
    bases = sub.add_parser("bases", help="build the base images (cached by recipe hash)")
    bases.add_argument("names", nargs="*", help=f"recipes (default: all of {sorted(BASES)})")
    sub.add_parser("check-build", help="docker build a trivial Dockerfile with no network")
    args = parser.parse_args(argv)
    cache_dir = default_cache_dir()
    say = Progress()
    try:
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
    except ClusterError as exc:
        say(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
