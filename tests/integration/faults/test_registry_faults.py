"""The registry pulls the ground from under a ModelDeployment: the alias is moved to a version that
is then deleted (MLflow deletes the alias with it), a serving version is deleted, the whole
registered model is deleted. What serves keeps serving, nothing is rolled out to a version that
is not there, the status and one Event per transition say why, and nothing loops on errors.

An alias moved to a version whose artifacts are gone is
tests/integration/operator/test_preflight.py::
test_version_without_artifacts_is_not_rolled_out_until_they_appear (it asserts the same
after-conditions: v1 serves, no history entry, one PreflightFailed Event).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from modeldeploy.api import reasons as r
from tests.integration.faults.conftest import Story, reconcile_errors
from tests.integration.operator.conftest import Kube, Registry, wait_for
from tests.integration.operator.test_high_availability import reconciled

pytestmark = pytest.mark.faults


def follow(kube: Kube, namespace: str, name: str, model: str) -> Story:
    spec = {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "5s"}}
    kube.create_md(namespace, name, spec)
    return Story(kube, namespace, name)


def degraded(story: Story, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = story.kube.condition(story.namespace, story.name, r.COND_DEGRADED)
        return c if (c.get("status"), c.get("reason")) == ("True", reason) else None

    return wait_for(check, 60, f"{story.name}: Degraded={reason}")


def test_deleted_versions_and_models_leave_what_serves_serving(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    op = start_operator(namespace)
    ns = namespace
    models = {name: registry.new_model(versions=2) for name in ("moved", "serving", "model")}
    stories = {}
    for name, model in models.items():
        registry.set_alias(model, "champion", "1")
        stories[name] = follow(kube, ns, name, model)
    for name in models:
        kube.wait_phase(ns, name, r.HEALTHY, serving="1")
    registry.set_alias(models["serving"], "champion", "2")
    kube.wait_phase(ns, "serving", r.HEALTHY, serving="2")

    # The alias moves to v2 and v2 is deleted before the operator can act on the move (it is
    # stopped meanwhile, as a starved or paused process is): it must never roll v2 out.
    assert op.proc is not None
    os.killpg(op.proc.pid, signal.SIGSTOP)
    try:
        registry.set_alias(models["moved"], "champion", "2")
        registry.client.delete_model_version(models["moved"], "2")
    finally:
        os.killpg(op.proc.pid, signal.SIGCONT)
    t0 = time.monotonic()
    # The serving version deleted; the whole registered model deleted.
    registry.client.delete_model_version(models["serving"], "2")
    registry.client.delete_registered_model(models["model"])

    for name, version in (("moved", "1"), ("serving", "2"), ("model", "1")):
        story = stories[name]
        cond = degraded(story, r.MODEL_NOT_FOUND)
        assert f"keeping version {version}" in cond["message"], cond
        print(f"FAULT-TIMING registry-{name} seconds={time.monotonic() - t0:.1f}")
    for name, version in (("moved", "1"), ("serving", "2"), ("model", "1")):
        story = stories[name]
        reconciled(kube, ns, name)
        st = story.status()
        assert (st["phase"], st["servingVersion"]) == (r.DEGRADED, version), (name, st)
        assert story.serves(version), name
        assert story.reasons()[r.EV_MODEL_NOT_FOUND] == 1, (name, story.reasons())
    assert stories["moved"].history() == [("1", r.OUTCOME_SUCCEEDED)]
    assert stories["moved"].started("2") == 0
    assert stories["serving"].history() == [("1", r.OUTCOME_SUCCEEDED), ("2", r.OUTCOME_SUCCEEDED)]
    assert stories["model"].history() == [("1", r.OUTCOME_SUCCEEDED)]
    # Polled every 5 s, answered "not found" each time: not an error, not a loop of Events.
    time.sleep(6)
    assert all(s.reasons()[r.EV_MODEL_NOT_FOUND] == 1 for s in stories.values())
    assert reconcile_errors(op.metrics()) == 0
