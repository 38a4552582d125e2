"""The approval gate (spec.model.requireApproval) on the real API server and MLflow registry,
with approvals given the way people give them: `modeldeploy approve` (the CLI, a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from modeldeploy.governance import records
from tests.integration.operator.conftest import Kube, Registry, wait_for

CLI = str(Path(sys.executable).parent / "modeldeploy")


def approve(registry: Registry, model: str, version: str, stage: str = "production") -> None:
    env = dict(os.environ, MLFLOW_TRACKING_URI=registry.uri, MODELDEPLOY_USER="release-manager")
    done = subprocess.run(
        [CLI, "approve", model, version, "--stage", stage, "--note", "reviewed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def gated(model: str, poll: str) -> dict[str, object]:
    return {
        "model": {"name": model, "alias": "champion", "requireApproval": "production"},
        "registry": {"pollInterval": poll},
    }


def audit(registry: Registry, model: str, version: str) -> list[records.AuditRecord]:
    return records.audit_records(registry.client.get_model_version(model, version).tags)


def test_an_unapproved_version_waits_and_the_webhook_rolls_it_out_within_seconds_of_approval(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model(versions=2)
    approve(registry, model, "1")
    registry.set_alias(model, "champion", "1")
    start_operator(namespace)
    # Polling once an hour: only the registry webhook can make the approval visible quickly.
    kube.create_md(namespace, "m", gated(model, "1h"))
    kube.wait_phase(namespace, "m", "Healthy", serving="1")

    registry.set_alias(model, "champion", "2")
    st = kube.wait_phase(namespace, "m", "AwaitingApproval", timeout=20)
    assert (st["servingVersion"], st["resolvedVersion"]) == ("1", "2")
    approved = kube.condition(namespace, "m", "Approved")
    assert approved["status"] == "False" and approved["reason"] == "AwaitingApproval"
    assert "version 2" in approved["message"] and "production" in approved["message"]
    assert kube.condition(namespace, "m", "Ready")["status"] == "True"  # 1 keeps serving
    env = {
        e.name: e.value
        for e in kube.deployment(namespace, "m").spec.template.spec.containers[0].env
    }
    assert env["MODEL_VERSION"] == "1"
    assert kube.events(namespace, "ApprovalRequired")

    t0 = time.monotonic()
    approve(registry, model, "2")
    st = kube.wait_phase(namespace, "m", "Healthy", serving="2", timeout=20)
    took = time.monotonic() - t0
    approved = kube.condition(namespace, "m", "Approved")
    assert approved["status"] == "True" and "release-manager" in approved["message"]
    assert [(h["version"], h["outcome"]) for h in st["history"]] == [
        ("1", "Succeeded"),
        ("2", "Succeeded"),
    ]
    print(f"approval → Healthy on version 2 in {took:.1f}s (webhook)")

    # The operator's own registry writes (its audit entries) come back as webhook events; they
    # must not wake it into a loop: one deploy record per version, one rollout Event each.
    wait_for(lambda: audit(registry, model, "2"), 10, "the deploy record on version 2")
    time.sleep(3)
    assert [a.action for a in audit(registry, model, "2")] == ["approve", "deploy"]
    deploy = audit(registry, model, "2")[-1]
    assert deploy.details["modeldeployment"] == f"{namespace}/m"
    assert deploy.details["previous"] == "1"
    assert sum(e.count or 1 for e in kube.events(namespace, "RolloutStarted")) == 2


def test_without_the_webhook_polling_finds_the_approval(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model(versions=1)
    registry.set_alias(model, "champion", "1")
    start_operator(namespace, webhook=False)
    kube.create_md(namespace, "m", gated(model, "5s"))
    st = kube.wait_phase(namespace, "m", "AwaitingApproval", timeout=20)
    assert "servingVersion" not in st  # nothing was ever approved: nothing serves
    assert kube.deployment(namespace, "m") is None
    assert kube.condition(namespace, "m", "Ready")["reason"] == "AwaitingApproval"

    approve(registry, model, "1")
    kube.wait_phase(namespace, "m", "Healthy", serving="1", timeout=30)
