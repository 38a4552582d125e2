"""An alert pushed while no operator could hear it is re-learned from Alertmanager's API when a
replica starts leading, rather than on Alertmanager's repeat_interval: real API server, real
MLflow, real Alertmanager (the alert is posted to its API as Prometheus would post it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tests.integration.operator.conftest import Kube, Registry


def post_alert(alertmanager_url: str, labels: dict[str, str], ends: datetime) -> None:
    """Firing until `ends`; an `ends` of now resolves it."""
    starts = datetime.now(UTC) - timedelta(minutes=1)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": "posted by test_alert_relearn"},
            "startsAt": starts.isoformat(),
            "endsAt": ends.isoformat(),
        }
    ]
    requests.post(f"{alertmanager_url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def test_a_new_leader_re_learns_a_firing_alert_it_was_never_sent(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str, alertmanager_url: str
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    # No --alerts-url (no polling) and no webhook: only the read at taking the lease can learn it.
    relearn = ["--alertmanager-url", alertmanager_url]
    op = start_operator(namespace, extra_args=relearn)
    kube.create_md(
        namespace,
        "m",
        {
            "model": {"name": model, "alias": "champion"},
            "rollback": {"enabled": True, "onAlerts": ["ModelHighErrorRate"]},
        },
    )
    kube.wait_phase(namespace, "m", "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "m", "Healthy", serving="2")
    op.kill()  # the leader is gone; the alert fires while no replica leads

    labels = {
        "alertname": "ModelHighErrorRate",
        "namespace": namespace,
        "modeldeployment": "m",
        "model_version": "2",
        "severity": "critical",
    }
    post_alert(alertmanager_url, labels, datetime.now(UTC) + timedelta(minutes=10))
    try:
        start_operator(namespace, extra_args=relearn)  # takes the lease once the old one expires
        st = kube.wait_phase(namespace, "m", "RolledBack", serving="1", timeout=90)
        assert st["rejectedVersions"] == ["2"]
        rolled = [e for e in kube.events(namespace, "RolledBack")]
        assert len(rolled) == 1, [e.message for e in rolled]
        assert "ModelHighErrorRate" in rolled[0].message
    finally:  # resolve it, so Alertmanager does not keep it for others
        post_alert(alertmanager_url, labels, datetime.now(UTC))
