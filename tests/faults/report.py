"""``python -m tests.faults.report``: the fault matrix of the last run as two tables and, as the
last line, one JSON object (docs/reliability.md keeps the figures of a run)."""

from __future__ import annotations

import json
import sys

from tests.faults.matrix import DESIGNED, read_all


def summary() -> dict[str, object]:
    scenarios, checks = read_all()
    return {
        "check": "faults",
        "scenarios": len(scenarios),
        "events_sent": sum(s.events_sent for s in scenarios),
        "events_lost": sum(s.lost for s in scenarios),
        "duplicates_exactly_once": sum(s.duplicated for s in scenarios if s.exactly_once),
        "unexpected_crashes": sum(1 for s in scenarios if s.process == "crashed"),
        "hangs": sum(1 for s in scenarios if s.process == "hung"),
        "security_checks": len(checks),
        "security_checks_passed": sum(1 for c in checks if c.passed),
    }


def main() -> int:
    scenarios, checks = read_all()
    head = f"{'#':>2} {'stage':<9} {'fault':<52} {'sent':>7} {'deliv':>7} {'dlq':>5} "
    print(head + f"{'dup':>5} {'lost':>5} process")
    for s in sorted(scenarios, key=lambda s: (s.item, s.stage, s.fault)):
        mark = "" if s.process in DESIGNED else "  <-- not as designed"
        print(
            f"{s.item:>2} {s.stage:<9} {s.fault[:52]:<52} {s.events_sent:>7} {s.delivered:>7} "
            f"{s.dead_lettered:>5} {s.duplicated:>5} {s.lost:>5} {s.process}{mark}"
        )
    print()
    print(f"{'#':>2} {'security check':<72} result")
    for c in sorted(checks, key=lambda c: (c.item, c.check)):
        print(f"{c.item:>2} {c.check[:72]:<72} {'pass' if c.passed else 'FAIL'}")
    print(json.dumps(summary(), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
