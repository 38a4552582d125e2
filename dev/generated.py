"""Files the repository generates and commits, and the one way to write or check them.

dev/sync-chart.py (the chart's CRD and rule copies) and dev/dashboards.py (the Grafana
dashboards) both produce a set of expected files from their one source. Both commit the output,
so a reader sees it and a chart works from a checkout; `--check` (run by `make lint` and by
tests) fails when the committed files differ, so nobody edits the copies by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def run(
    argv: list[str],
    expected: Callable[[], dict[Path, str]],
    stale: Callable[[], Iterable[Path]],
    differences: Callable[[], list[str]],
    *,
    usage: str,
    hint: str,
    root: Path,
) -> int:
    """`[]`: write what differs and remove what is stale; `["--check"]`: print the
    differences and return 1 if there are any; anything else: usage, 2."""
    if argv == ["--check"]:
        diffs = differences()
        for line in diffs:
            print(line, file=sys.stderr)
        if diffs:
            print(hint, file=sys.stderr)
        return 1 if diffs else 0
    if argv:
        print(usage, file=sys.stderr)
        return 2
    for path in stale():
        path.unlink()
        print(f"removed {path.relative_to(root)}")
    for path, text in expected().items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(root)}")
    return 0
