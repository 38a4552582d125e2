#!/usr/bin/env python3
"""Generate the Grafana dashboards the chart ships (charts/modeldeploy/dashboards/*.json).

Dashboards are code: built with grafana-foundation-sdk (the `dashboards` dependency group; the
pinned version targets Grafana 11.6) from the metric and label names of modeldeploy.names, so a
renamed metric changes the dashboards with it. Nobody edits the JSON; `make dashboards` rewrites
it and tests/unit/test_dashboards.py fails when the committed files differ from this script's
output (as `--check` does, which `make lint` runs). The dashboards are built in
dev/dashboards_serving.py (serving, quality) and dev/dashboards_operator.py (rollouts, pipeline)
from dev/dashboard_kit.py's panels and variables.

Every panel filters by the template variables that are labels of its series (docs/dashboards.md
lists the exceptions): multi-value variables with "All" = `.*`, used as `label=~"$var"`.

Usage: dev/dashboards.py [--check]
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "dev"))
import dashboards_operator  # noqa: E402  (dev/ is not a package)
import dashboards_serving  # noqa: E402
import generated  # noqa: E402

OUT = REPO / "charts" / "modeldeploy" / "dashboards"

DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "modeldeploy-serving.json": dashboards_serving.serving,
    "modeldeploy-rollouts.json": dashboards_operator.rollouts,
    "modeldeploy-pipeline.json": dashboards_operator.pipeline,
    "modeldeploy-quality.json": dashboards_serving.quality,
}


def render(make: Callable[[], dashboard.Dashboard]) -> str:
    """The dashboard's JSON: sorted keys and a trailing newline, so output is byte-stable."""
    model = json.loads(json.dumps(make().build(), cls=JSONEncoder))
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    return {OUT / name: render(make) for name, make in DASHBOARDS.items()}


def differences() -> list[str]:
    out = []
    expected = expected_files()
    for path, text in expected.items():
        rel = path.relative_to(REPO)
        if not path.exists():
            out.append(f"missing: {rel}")
            continue
        old = path.read_text()
        if old != text:
            diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), lineterm="", n=0))
            changed = sum(1 for line in diff[2:] if line[:1] in "+-")
            out.append(f"differs from dev/dashboards.py: {rel} ({changed} lines)")
            out += [f"  {line}" for line in diff[2:12]]
    out += [f"stale (not generated): {p.relative_to(REPO)}" for p in stale_files()]
    return out


def stale_files() -> list[Path]:
    """Committed dashboards no generator makes any more (known by name: nothing to render)."""
    return [p for p in sorted(OUT.glob("*.json")) if p.name not in DASHBOARDS]


def main(argv: list[str]) -> int:
    return generated.run(
        argv,
        expected_files,
        stale_files,
        differences,
        usage=__doc__ or "",
        hint="run `make dashboards` (dev/dashboards.py)",
        root=REPO,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
