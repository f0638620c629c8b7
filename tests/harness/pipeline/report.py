"""The system test's figures: a table for people and one JSON line for machines.

``python -m tests.harness.pipeline.report [results.json]`` prints both (the JSON line last), as
``make test-cluster`` does after the tests.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ARTIFACTS = Path(os.environ.get("STREAMPULSE_TEST_ARTIFACTS_DIR", "test-artifacts"))
RESULTS = ARTIFACTS / "cluster.json"
KEYS = (
    "images_built",
    "cluster_ready_s",
    "pipeline_ready_s",
    "posts_sent",
    "posts_enriched",
    "paimon_rows",
    "aggregates_equal_local",
    "hpa_max_replicas",
    "hpa_back_to_min",
    "pods_admitted_restricted",
    "privileged_pod_refused",
    "network_policy_enforced",
    "leftover_objects",
)


def save(results: dict[str, Any], details: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results, "details": details}, indent=2) + "\n")


def summary(results: dict[str, Any]) -> str:
    """The JSON line: every key of the issue's Output, ``null`` where a step did not get there."""
    return json.dumps({"check": "cluster", **{k: results.get(k) for k in KEYS}})


def table(results: dict[str, Any], details: dict[str, Any]) -> str:
    rows = [(key, results.get(key)) for key in KEYS]
    rows += [(f"  {key}", value) for key, value in details.items()]
    width = max(len(key) for key, _ in rows)
    lines = [f"{'check':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{key:<{width}}  {'-' if value is None else value}" for key, value in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else RESULTS
    if not path.is_file():
        print(f"no results at {path}: the system test did not get to write them")
        print(summary({}))
        return 1
    data = json.loads(path.read_text())
    print(table(data["results"], data.get("details", {})))
    print(summary(data["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
