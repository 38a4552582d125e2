"""Automatic rollback, every part real: MLflow registry, API server, the operator, real serving
processes for the pods, Prometheus scraping them with the operator's rules, Alertmanager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from podrunner import LocalPods

from tests.conftest import TestStack
from tests.e2e.conftest import Traffic, add_flaky_version
from tests.integration.operator.conftest import Kube, Registry

# Fast, test-sized alert settings; the shipped defaults are measured in benchmarks/.
ALERTS = {"errorRate": 0.2, "for": "4s", "window": "20s"}


def md_spec(model: str) -> dict[str, Any]:
    return {
        "model": {"name": model, "alias": "champion"},
        "monitoring": {"serviceMonitor": {"interval": "2s"}, "alerts": ALERTS},
    }


def template_version(kube: Kube, namespace: str, md: str) -> str:
    dep = kube.deployment(namespace, md)
    return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}["MODEL_VERSION"]


def assert_rollback_in_lineage(
    kube: Kube, registry: Registry, namespace: str, model: str, bad: str
) -> None:
    """`modeldeploy lineage MODEL VERSION`, as a user runs it, shows the rollback twice: in the
    version's audit trail in MLflow and in the history of the ModelDeployment that served it."""
    cli = str(Path(sys.executable).parent / "modeldeploy")
    done = subprocess.run(
        [cli, "lineage", model, bad, "--namespace", namespace, "--output", "json"],
        env=dict(os.environ, MLFLOW_TRACKING_URI=registry.uri, KUBECONFIG=kube.cluster.kubeconfig),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lineage = json.loads(done.stdout)
    trail = lineage["modelVersion"]["audit"]
    assert [a["action"] for a in trail] == ["deploy", "rollback"], trail
    assert trail[-1]["alert"] == "ModelHighErrorRate" and trail[-1]["to"] == "1"
    (served,) = lineage["deployments"]
    assert (served["namespace"], served["name"]) == (namespace, "m")
    (rolled,) = [r for r in served["rollouts"] if r["version"] == bad]
    assert (rolled["outcome"], rolled["alert"]) == ("RolledBack", "ModelHighErrorRate")


def roll_out_bad_version_and_expect_rollback(
    kube: Kube, registry: Registry, namespace: str, op: Any, via: str
) -> None:
    model = registry.new_model(versions=1)
    bad = add_flaky_version(registry, model)
    registry.set_alias(model, "champion", "1")
    kube.create_md(namespace, "m", md_spec(model))
    kube.wait_phase(namespace, "m", "Healthy", serving="1", timeout=60)

    with LocalPods(namespace) as pods, Traffic(pods, "m") as traffic:
        pods.wait_for_version("m", "1", timeout=90)
        registry.set_alias(model, "champion", bad)
        pods.wait_for_version("m", bad, timeout=90)

        st = kube.wait_phase(namespace, "m", "RolledBack", serving="1", timeout=120)
        pods.wait_for_version("m", "1", timeout=90)  # traffic is served by version 1 again
        assert traffic.codes[(bad, 500)] > 0, traffic.codes
        assert traffic.codes[("1", 200)] > 0

    assert st["rejectedVersions"] == [bad]
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "ModelHighErrorRate", rolled
    assert f"from version {bad} to 1" in rolled["message"]
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [
        ("1", "Succeeded"),
        (bad, "RolledBack"),
        ("1", "Succeeded"),
    ]
    assert len(kube.events(namespace, "RolledBack")) == 1
    labels = f'alert="ModelHighErrorRate",name="m",namespace="{namespace}"'
    assert f"modeldeploy_rollbacks_total{{{labels}}} 1.0" in op.metrics()
    tag = registry.client.get_model_version(model, bad).tags.get("modeldeploy.io/rejected", "")
    assert tag.startswith(f"{namespace}/m: ModelHighErrorRate"), via
    assert_rollback_in_lineage(kube, registry, namespace, model, bad)

    # The alias still names the bad version: it stays out.
    time.sleep(5)
    assert template_version(kube, namespace, "m") == "1"
    assert kube.status(namespace, "m")["phase"] == "RolledBack"

    # The alias moves on: the new version rolls out and the rejection is gone.
    good = registry.add_version(model)
    registry.set_alias(model, "champion", good)
    st = kube.wait_phase(namespace, "m", "Healthy", serving=good, timeout=60)
    assert not st.get("rejectedVersions")


def test_alert_delivered_by_alertmanager_webhook_rolls_back_bad_version(
    kube: Kube, registry: Registry, start_operator, namespace: str, monitoring: TestStack
) -> None:
    op = start_operator(namespace)
    monitoring.stack.set_alert_webhook(f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager")
    roll_out_bad_version_and_expect_rollback(kube, registry, namespace, op, "webhook")
    assert 'modeldeploy_alert_notifications_total{outcome="accepted"}' in op.metrics()


def test_polling_catches_the_alert_when_the_webhook_receiver_is_down(
    kube: Kube,
    registry: Registry,
    start_operator,
    namespace: str,
    monitoring: TestStack,
    alertmanager_url: str,
) -> None:
    # Alertmanager delivers to an address where nothing listens; only polling can see the alert.
    monitoring.stack.set_alert_webhook("http://127.0.0.1:9/nobody-listens")
    op = start_operator(
        namespace, extra_args=["--alerts-url", alertmanager_url, "--alerts-poll-interval", "2s"]
    )
    roll_out_bad_version_and_expect_rollback(kube, registry, namespace, op, "polling")
    assert "modeldeploy_alert_notifications_total{" not in op.metrics()  # no webhook ever came
    am = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5).json()
    assert any(a["labels"].get("namespace") == namespace for a in am)
