"""Clients sending bad input cannot roll back a healthy version.

Every part real (MLflow registry, API server, operator, serving processes, Prometheus with the
operator's rules, Alertmanager). A tenth of the traffic sends NaN, which the model (sklearn)
refuses with a ValueError: the server must answer 400, so the error-rate alert (5xx share above
errorRate, the shipped 0.05) never fires. These used to be 500s, and a review rolled a healthy
version back with them (40.5 s with the shipped alert timings); test_rollback.py proves that a
version failing on good input still is rolled back.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from podrunner import LocalPods

from tests.conftest import TestStack, wait_for
from tests.e2e.conftest import Traffic
from tests.integration.operator.conftest import Kube, Registry

# The shipped error-rate threshold (10 % bad input would exceed it), test-sized timings.
ALERTS = {"errorRate": 0.05, "for": "4s", "window": "10s"}
# window + for, plus two scrapes, two rule evaluations (2 s each) and Alertmanager's group_wait.
HOLD_SECONDS = 10 + 4 + 2 * 2 + 2 * 2 + 1
BAD = b'{"inputs": [[NaN]]}'  # valid for Python's json (and MLflow's server), refused by sklearn


def prom(url: str, query: str) -> list[dict[str, Any]]:
    r = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def error_rate_rules(url: str) -> str:
    """The queries of the error-rate rules Prometheus has loaded, joined."""
    r = requests.get(f"{url}/api/v1/rules", timeout=5)
    r.raise_for_status()
    return "\n".join(
        rule["query"]
        for group in r.json()["data"]["groups"]
        for rule in group["rules"]
        if rule.get("name") == "ModelHighErrorRate"
    )


def test_bad_input_traffic_does_not_roll_back_a_healthy_version(
    kube: Kube,
    registry: Registry,
    start_operator: Any,
    namespace: str,
    monitoring: TestStack,
    prometheus_url: str,
) -> None:
    op = start_operator(namespace)
    monitoring.stack.set_alert_webhook(f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager")
    model = registry.new_model(versions=2)  # two healthy versions: 1 is a rollback target
    registry.set_alias(model, "champion", "1")
    spec = {
        "model": {"name": model, "alias": "champion"},
        "monitoring": {"serviceMonitor": {"interval": "2s"}, "alerts": ALERTS},
    }
    kube.create_md(namespace, "m", spec)
    kube.wait_phase(namespace, "m", "Healthy", serving="1", timeout=60)
    # Version 2 rolls out; 1, healthy before it, is what a rollback would go back to.
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=60)

    with LocalPods(namespace) as pods, Traffic(pods, "m", bad=BAD) as traffic:
        pods.wait_for_version("m", "2", timeout=90)
        rule = f'namespace="{namespace}"'
        wait_for(lambda: rule in error_rate_rules(prometheus_url), 30, "the rule in Prometheus")
        # The clock starts once Prometheus holds version 2's answers to bad input (whatever
        # their status): from then on the alert has what it needs to fire if they are 5xx.
        refused = (
            f'prediction_requests_total{{namespace="{namespace}", model_version="2", code!="200"}}'
            " > 0"  # the 500 series exists from the start, at 0
        )
        wait_for(lambda: prom(prometheus_url, refused), 30, "Prometheus scraping the refusals")
        end = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < end:
            st = kube.status(namespace, "m")
            assert st.get("phase") == "Healthy" and st.get("servingVersion") == "2", st
            time.sleep(1)
        alerts = prom(prometheus_url, f'ALERTS{{namespace="{namespace}"}}')
        codes = {r["metric"]["code"] for r in prom(prometheus_url, refused)}
        errors_5xx = prom(
            prometheus_url,
            f'prediction_requests_total{{namespace="{namespace}", code=~"5.."}} > 0',
        )

    assert alerts == [], alerts  # not even pending
    assert codes == {"400"}, codes
    assert errors_5xx == [], errors_5xx
    assert traffic.bad_codes[("2", 400)] >= 20, traffic.bad_codes  # the bad share was sent...
    assert traffic.codes[("2", 200)] > 0
    answers = [*traffic.codes, *traffic.bad_codes]
    assert not [k for k in answers if k[1] >= 500], (traffic.codes, traffic.bad_codes)  # no 5xx
    st = kube.status(namespace, "m")
    assert not st.get("rejectedVersions"), st
    assert not kube.events(namespace, "RolledBack")
