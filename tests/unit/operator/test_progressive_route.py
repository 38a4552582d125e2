"""Route weights between two canary steps: the canary that passed a step keeps that step's
share of the route while the pods of the next step start; it never drops back to 0 %."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy.api import reasons as r
from modeldeploy.api.spec import parse_spec
from modeldeploy.api.status import AnalysisRecord, CanaryStatus, iso
from modeldeploy.rollout import progressive
from modeldeploy.rollout.deployment import DeploymentState
from modeldeploy.rollout.rollback import Target

T0 = datetime(2025, 5, 1, 9, 0, 0, tzinfo=UTC)
SPEC = parse_spec(
    {
        "model": {"name": "fraud-detector", "alias": "champion"},
        "serving": {"replicas": 4},
        "strategy": {
            "type": "Canary",
            "canary": {
                "steps": [{"weight": 10, "duration": "10s"}, {"weight": 50, "duration": "10s"}],
                "trafficRouting": {"httpRoute": {"name": "fraud-route"}},
            },
        },
    }
)
STABLE, NEW = Target("1", "models:/fraud-detector/1", "run-1"), Target("2", "models:/f/2", "run-2")


def route(stable: int, canary: int) -> progressive.RouteState:
    obj: dict[str, Any] = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fraud", "port": 8080, "weight": stable},
                        {"name": "fraud-canary", "port": 8080, "weight": canary},
                    ]
                }
            ]
        }
    }
    return progressive.RouteState.from_object("fraud-route", obj, "fraud", "fraud-canary")


def canary_pods(replicas: int, available: int) -> DeploymentState:
    return DeploymentState(
        version="2",
        model_uri=NEW.uri,
        run_id=NEW.run_id,
        replicas=replicas,
        updated=replicas,
        ready=available,
        available=available,
        total=replicas,
        generation=3,
        observed_generation=3,
        deadline_exceeded=False,
    )


def seen(canary: DeploymentState, weights: progressive.RouteState) -> progressive.Observed:
    return progressive.Observed(stable_ready=4, stable_complete=True, canary=canary, route=weights)


def canary_weight_set(p: progressive.Progress) -> int | None:
    """The canary backendRef's weight the plan's JSON patch sets, None if it sets none."""
    ops = [op for op in p.route_ops if op["path"] == "/spec/rules/0/backendRefs/1/weight"]
    return ops[-1]["value"] if ops else None


def test_canary_keeps_its_passed_share_while_the_next_steps_pods_start() -> None:
    start = iso(T0)
    step0 = CanaryStatus(
        version="2",
        model_uri=NEW.uri,
        run_id=NEW.run_id,
        strategy="Canary",
        step=0,
        steps=2,
        weight=10,
        effective_weight=10,
        started_at=start,
        state=r.CANARY_ANALYSING,
        step_started_at=start,
    )
    now = T0 + timedelta(seconds=12)
    passed = AnalysisRecord(0, r.VERDICT_PASSED, iso(now), "100 canary requests")
    at_ten = route(90, 10)

    # Step 1 passes: the canary (1 pod, all it needs at 10 %) moves to step 2, which needs 2.
    p = progressive.advance(
        SPEC, step0, NEW, STABLE, seen(canary_pods(1, 1), at_ten), passed, 4, now
    )
    assert p.canary is not None and (p.canary.step, p.canary.state) == (1, r.CANARY_SCALING)
    assert p.canary_replicas == 2
    assert canary_weight_set(p) is None, p.route_ops  # 10 % stays on the route

    # Its second pod is starting.
    later = now + timedelta(seconds=2)
    p2 = progressive.advance(
        SPEC, p.canary, NEW, STABLE, seen(canary_pods(2, 1), at_ten), None, 4, later
    )
    assert canary_weight_set(p2) is None, p2.route_ops
    assert p2.canary is not None and p2.canary.effective_weight == 10

    # Both pods ready: the step's weight.
    p3 = progressive.advance(
        SPEC, p2.canary, NEW, STABLE, seen(canary_pods(2, 2), at_ten), None, 4, later
    )
    assert canary_weight_set(p3) == 50


def test_a_new_canary_version_gets_no_share_until_its_pods_are_ready() -> None:
    """The share kept between steps is the same version's: a canary restarted on another
    version (the selector moved) starts from 0 %."""
    old = CanaryStatus(
        version="3",
        model_uri="models:/f/3",
        run_id="run-3",
        strategy="Canary",
        step=0,
        steps=2,
        weight=10,
        effective_weight=10,
        started_at=iso(T0),
        state=r.CANARY_ANALYSING,
        step_started_at=iso(T0),
    )
    now = T0 + timedelta(seconds=5)
    # The canary Deployment still runs version 3 while the selector names version 2.
    v3_pods = DeploymentState("3", "models:/f/3", "run-3", 1, 1, 1, 1, 1, 3, 3, False)
    p = progressive.advance(SPEC, old, NEW, STABLE, seen(v3_pods, route(90, 10)), None, 4, now)
    assert p.canary is not None and p.canary.version == "2"
    assert canary_weight_set(p) == 0
    # Its pods are being replaced by version 2's: still nothing until they are ready.
    p2 = progressive.advance(
        SPEC, p.canary, NEW, STABLE, seen(canary_pods(1, 0), route(100, 0)), None, 4, now
    )
    assert canary_weight_set(p2) is None and p2.canary is not None
    assert p2.canary.effective_weight == 0
