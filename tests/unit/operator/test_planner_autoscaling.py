"""The planner with spec.serving.autoscaling: the Deployment is applied without replicas, and a
rollout is complete once the replicas the HorizontalPodAutoscaler keeps are all available."""

from __future__ import annotations

from typing import Any

from modeldeploy.api import reasons as r
from modeldeploy.api.spec import parse_spec
from modeldeploy.render import objects as render
from modeldeploy.rollout.planner import DeploymentState, plan, stable_replicas
from tests.unit.operator.test_planner import MODEL, deployment_object, first_sight, then

AUTO = parse_spec(
    {
        "model": {"name": MODEL, "alias": "champion"},
        "serving": {"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}},
    }
)


def autoscaled(version: str, replicas: int) -> DeploymentState:
    """The Deployment applied without replicas, at `replicas` and complete there."""
    counted = parse_spec({"model": {"name": MODEL}, "serving": {"replicas": replicas}})
    obj: dict[str, Any] = deployment_object(version, spec=counted)
    obj["metadata"]["annotations"] = {render.ANN_AUTOSCALED: "true"}
    obj["spec"]["replicas"] = replicas
    return DeploymentState.from_object(obj)


def test_deployment_is_applied_without_replicas_beside_its_autoscaler() -> None:
    _, p = first_sight("3", spec=AUTO)
    dep = next(o for o in p.apply if o["kind"] == "Deployment")
    assert "replicas" not in dep["spec"]
    assert any(o["kind"] == "HorizontalPodAutoscaler" for o in p.apply)


def test_api_default_of_one_replica_below_min_replicas_is_not_a_completed_rollout() -> None:
    """A Deployment created without replicas gets the API server's default of 1 before the
    autoscaler has acted; minReplicas 2 is what the rollout waits for."""
    c, p = first_sight("3", spec=AUTO)
    c = then(c, p, deployment=autoscaled("3", 1))
    assert stable_replicas(c) == 2
    p = plan(c)
    assert p.status.phase == r.PROGRESSING
    assert [(h.version, h.outcome) for h in p.status.history] == [("3", r.OUTCOME_PROGRESSING)]

    c = then(c, p, deployment=autoscaled("3", 2))
    p = plan(c)
    assert p.status.phase == r.HEALTHY and p.status.serving_version == "3"


def test_replicas_the_autoscaler_set_within_its_bounds_are_kept() -> None:
    c, p = first_sight("3", spec=AUTO)
    c = then(c, p, deployment=autoscaled("3", 4))
    assert stable_replicas(c) == 4
    p = plan(c)
    assert p.status.phase == r.HEALTHY
    ready = p.status.condition(r.READY)
    assert ready is not None and "4 replica(s)" in ready.message
