"""Alert intake on the real API server and registry: Alertmanager notifications (as Alertmanager
sends them) reach the operator's webhook; duplicates roll back once; forged ones are refused."""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests
import stack as devstack

from tests.integration.operator.conftest import Kube, Operator, Registry, wait_for

TOKEN = devstack.Stack().alert_token()  # what the test operators are started with


def notification(
    namespace: str, md: str, version: str, alert: str = "ModelHighErrorRate", status: str = "firing"
) -> dict[str, Any]:
    labels = {
        "alertname": alert,
        "namespace": namespace,
        "modeldeployment": md,
        "model_version": version,
        "severity": "critical",
        "modeldeploy_io_managed": "true",
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "modeldeploy",
        "groupLabels": {"alertname": alert},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{md} v{version}: error rate above 0.05"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


def post(op: Operator, payload: dict[str, Any], token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager",
        json=payload,
        headers=headers,
        timeout=10,
    )


def deploy_two_versions(kube: Kube, registry: Registry, namespace: str, md: str) -> str:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    kube.create_md(namespace, md, {"model": {"name": model, "alias": "champion"}})
    kube.wait_phase(namespace, md, "Healthy", serving="1")
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, md, "Healthy", serving="2", timeout=30)
    return model


def test_duplicate_notification_rolls_back_once_and_forged_ones_are_refused(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    op = start_operator(namespace)
    model = deploy_two_versions(kube, registry, namespace, "m")
    payload = notification(namespace, "m", "2")

    forged = post(op, payload, token="guess")
    assert forged.status_code == 401 and "bearer token" in forged.json()["error"]
    assert post(op, payload, token=None).status_code == 401  # no token at all
    assert post(op, {"not": "alertmanager"}).status_code == 400
    time.sleep(1)
    assert kube.status(namespace, "m")["servingVersion"] == "2"  # nothing happened

    t0 = time.monotonic()
    assert post(op, payload).json() == {"woken": 1}
    assert post(op, payload).status_code == 200  # the same notification again

    def template_version() -> str:
        dep = kube.deployment(namespace, "m")
        return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}["MODEL_VERSION"]

    wait_for(lambda: template_version() == "1", 10, "Deployment patched back to version 1")
    patched_after = time.monotonic() - t0
    st = kube.wait_phase(namespace, "m", "RolledBack", serving="1")
    assert patched_after < 5  # generous bound; the median is measured in benchmarks/

    assert st["rejectedVersions"] == ["2"]
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [
        ("1", "Succeeded"),
        ("2", "RolledBack"),
        ("1", "Succeeded"),
    ]
    assert "ModelHighErrorRate" in st["history"][1]["reason"]
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert (rolled["status"], rolled["reason"]) == ("True", "ModelHighErrorRate")
    assert "from version 2 to 1" in rolled["message"]
    assert len(kube.events(namespace, "RolledBack")) == 1
    metrics = op.metrics()
    labels = f'alert="ModelHighErrorRate",name="m",namespace="{namespace}"'
    assert f"modeldeploy_rollbacks_total{{{labels}}} 1.0" in metrics
    assert 'modeldeploy_alert_notifications_total{outcome="unauthorized"} 2.0' in metrics
    tag = registry.client.get_model_version(model, "2").tags.get("modeldeploy.io/rejected", "")
    assert tag.startswith(f"{namespace}/m: ModelHighErrorRate at ")

    # Repeats keep coming while the alert is active: still one rollback, v2 stays out.
    post(op, payload)
    time.sleep(2)
    st = kube.status(namespace, "m")
    assert st["servingVersion"] == "1" and len(st["history"]) == 3
    assert len(kube.events(namespace, "RolledBack")) == 1


def test_rejection_cleared_when_the_alias_moves_or_by_annotation(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    op = start_operator(namespace)
    model = deploy_two_versions(kube, registry, namespace, "m")
    post(op, notification(namespace, "m", "2"))
    kube.wait_phase(namespace, "m", "RolledBack", serving="1")

    # A user who fixed what made v2 fail allows it again without moving the alias.
    kube.custom.patch_namespaced_custom_object(
        "modeldeploy.io",
        "v1alpha1",
        namespace,
        "modeldeployments",
        "m",
        {"metadata": {"annotations": {"modeldeploy.io/allow-version": "2"}}},
    )
    st = kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=30)
    assert not st.get("rejectedVersions")
    cond = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert (cond["status"], cond["reason"]) == ("False", "RejectionCleared")

    # Rejected again, then the alias moves on to a new version: that one rolls out.
    post(op, notification(namespace, "m", "2", alert="ModelHighLatency"))
    kube.wait_phase(namespace, "m", "RolledBack", serving="1")
    registry.set_alias(model, "champion", registry.add_version(model))
    st = kube.wait_phase(namespace, "m", "Healthy", serving="3", timeout=30)
    assert not st.get("rejectedVersions")


def test_alerts_that_do_not_apply_change_nothing(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    op = start_operator(namespace)
    deploy_two_versions(kube, registry, namespace, "m")
    for payload in (
        notification(namespace, "m", "1"),  # a version no longer served
        notification(namespace, "m", "2", alert="ModelInputDrift"),  # not in onAlerts
        notification(namespace, "other", "2"),  # another ModelDeployment
        notification("some-other-namespace", "m", "2"),  # another namespace
    ):
        assert post(op, payload).status_code == 200
    time.sleep(2)
    st = kube.status(namespace, "m")
    assert (st["phase"], st["servingVersion"]) == ("Healthy", "2")
    assert not st.get("rejectedVersions") and not kube.events(namespace, "RolledBack")
    counts = [
        ln for ln in op.metrics().splitlines() if ln.startswith("modeldeploy_rollbacks_total{")
    ]
    assert counts and all(ln.endswith(" 0.0") for ln in counts), counts  # created at 0, never 1


def test_rollback_disabled_reports_the_alert_and_changes_nothing(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    op = start_operator(namespace)
    model = registry.new_model(versions=1)
    kube.create_md(
        namespace, "m", {"model": {"name": model, "version": "1"}, "rollback": {"enabled": False}}
    )
    kube.wait_phase(namespace, "m", "Healthy", serving="1")
    post(op, notification(namespace, "m", "1"))

    def degraded() -> dict[str, Any] | None:
        c = kube.condition(namespace, "m", "Degraded")
        return c if c.get("status") == "True" else None

    cond = wait_for(degraded, 10, "Degraded condition")
    assert cond["reason"] == "RollbackDisabled" and "ModelHighErrorRate" in cond["message"]
    assert kube.events(namespace, "AlertFiring")
    assert kube.status(namespace, "m")["servingVersion"] == "1"
