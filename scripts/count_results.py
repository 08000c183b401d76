"""Add up passed and failed tests from pytest's JUnit XML and Playwright's JSON report.

A missing or unreadable report counts as one failure: a suite that did not run
must never look green.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET


def pytest_counts(path: str) -> tuple[int, int]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1
    passed = failed = 0
    for case in root.iter("testcase"):
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            failed += 1
        elif "skipped" not in outcomes:
            passed += 1
    return passed, failed


def playwright_counts(path: str) -> tuple[int, int]:
    try:
        with open(path) as handle:
            report = json.load(handle)
        stats = report["stats"]
    except (OSError, ValueError, KeyError):
        return 0, 1
    # flaky = failed then passed on retry: counted as a failure; global errors (a web server that
    # would not start, a file that would not load) fail the run even when no test could start.
    failed = stats.get("unexpected", 0) + stats.get("flaky", 0) + len(report.get("errors", []))
    return stats.get("expected", 0), failed


def main() -> None:
    junit, e2e = sys.argv[1], sys.argv[2]
    p1, f1 = pytest_counts(junit)
    p2, f2 = playwright_counts(e2e)
    print(p1 + p2, f1 + f2)


if __name__ == "__main__":
    main()
