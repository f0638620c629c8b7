"""``python -m tests.harness.kube``: build (or find) the control-plane binaries and list them."""

from __future__ import annotations

import json
import sys
import time

from tests.harness.kube.build import build_time_file, default_cache_dir, ensure_binaries
from tests.harness.kube.gateway_api import ensure_gateway_api_crds


def main() -> int:
    started = time.monotonic()
    binaries = ensure_binaries()
    for name, path in binaries.all().items():
        print(f"{name:24} {path}")
    print(f"{'gateway-api CRDs':24} {ensure_gateway_api_crds()}")
    elapsed = time.monotonic() - started
    record_file = build_time_file(default_cache_dir())
    if record_file.is_file():
        cold = json.loads(record_file.read_text())["seconds"]
        print(f"ready in {elapsed:.1f}s (last full build took {cold}s, see {record_file})")
    else:
        print(f"ready in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
