"""Every query of the generated Grafana dashboards is valid PromQL for a real Prometheus: the
stack's server accepts it (HTTP 200, status success) with the template variables replaced by
`.*` (what "All" sends) and Grafana's interval variables by durations. A query may return nothing:
the stack need not run every exporter (cAdvisor, the operator) at that moment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO

DASHBOARDS = sorted((REPO / "charts" / "modeldeploy" / "dashboards").glob("*.json"))
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h"}


def queries(path: Path) -> list[tuple[str, str]]:
    dashboard = json.loads(path.read_text())
    out = []
    for var in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.*), *\w+\)", var.get("query", ""))
        if var["type"] == "query":
            assert match, var["query"]
            out.append((f"variable {var['name']}", match.group(1)))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def substitute(expr: str) -> str:
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\w+", ".*", expr)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_prometheus_accepts_every_dashboard_query(prometheus_url: str, path: Path) -> None:
    found = queries(path)
    assert found
    for title, expr in found:
        promql = substitute(expr)
        resp = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (
            f"{path.name} / {title}: {body.get('error')}\n{promql}"
        )
