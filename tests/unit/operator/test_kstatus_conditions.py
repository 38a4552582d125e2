"""kstatus' conditions (sigs.k8s.io/cli-utils/pkg/kstatus), told through the pure planner:
`Reconciling=True` while the operator works towards the spec, `Stalled=True` when it cannot get
there without a person, neither once the spec is served, never both; `observedGeneration` on
every status. kstatus itself is run on real objects in tests/integration/gitops."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modeldeploy.api import reasons as r
from modeldeploy.api.spec import parse_spec
from modeldeploy.api.status import Condition, Status, iso, with_kstatus
from modeldeploy.registry.types import Unservable
from modeldeploy.rollout.planner import InvalidSpec, Plan, plan
from tests.unit.operator.test_approval_gate import GATED, serving_approved, version
from tests.unit.operator.test_planner import (
    NOT_FOUND,
    T0,
    UNREACHABLE,
    ctx,
    deployment,
    first_sight,
    healthy_on,
    resolved,
    then,
)
from tests.unit.operator.test_rollback import alert, rolled_back, rolling_back, serving_v2_after_v1

KSTATUS = (r.COND_RECONCILING, r.COND_STALLED)


def kstatus(p: Plan | Status) -> dict[str, tuple[str, str, str]]:
    """The kstatus conditions present: {type: (status, reason, message)}."""
    status = p.status if isinstance(p, Plan) else p
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions if c.type in KSTATUS}


def only(p: Plan, type_: str) -> tuple[str, str]:
    """The one kstatus condition present, which must be `type_` and True: (reason, message)."""
    found = kstatus(p)
    assert list(found) == [type_], found
    status, reason, message = found[type_]
    assert status == "True"
    return reason, message


def test_healthy_has_neither_condition_and_observes_its_generation() -> None:
    _, p = healthy_on("3", generation=4)
    assert p.status.phase == r.HEALTHY
    assert kstatus(p) == {}
    assert p.status.observed_generation == 4


def test_a_rollout_in_progress_is_reconciling_with_the_counts() -> None:
    _, p = first_sight("3", generation=2)
    assert p.status.phase == r.PROGRESSING
    reason, message = only(p, r.COND_RECONCILING)
    assert reason == r.ROLLOUT_IN_PROGRESS
    assert message.startswith("version 3: 0/2 updated")
    cond = p.status.condition(r.COND_RECONCILING)
    assert cond is not None and cond.observed_generation == 2


def test_completing_the_rollout_removes_reconciling() -> None:
    c, p = first_sight("3")
    assert r.COND_RECONCILING in kstatus(p)
    p = plan(then(c, p, deployment=deployment("3")))
    assert p.status.phase == r.HEALTHY and kstatus(p) == {}


def test_an_unchanged_reconcile_keeps_the_transition_time() -> None:
    c, p = first_sight("3")
    again = plan(then(c, p, deployment=deployment("3", "rolling")))
    before = p.status.condition(r.COND_RECONCILING)
    after = again.status.condition(r.COND_RECONCILING)
    assert before is not None and after is not None
    assert after.last_transition_time == before.last_transition_time == iso(T0)


def test_resolving_while_the_registry_is_unreachable_is_reconciling() -> None:
    p = plan(ctx(UNREACHABLE))
    assert p.status.phase == r.RESOLVING
    reason, message = only(p, r.COND_RECONCILING)
    assert reason == r.REGISTRY_UNREACHABLE and "connection refused" in message


def test_a_missing_model_with_nothing_serving_is_stalled() -> None:
    p = plan(ctx(NOT_FOUND))
    assert p.status.phase == r.FAILED
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.MODEL_NOT_FOUND and "@champion" in message


def test_a_missing_model_while_serving_is_stalled_and_still_ready() -> None:
    c, p = healthy_on("3")
    p = plan(then(c, p, resolution=NOT_FOUND))
    assert p.status.phase == r.DEGRADED
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.MODEL_NOT_FOUND and "keeping version 3" in message
    ready = p.status.condition(r.READY)
    assert ready is not None and ready.status == "True"  # version 3 still serves


def test_a_passed_progress_deadline_is_stalled() -> None:
    c, p = first_sight("3")
    p = plan(then(c, p, deployment=deployment("3", "stalled")))
    assert p.status.phase == r.DEGRADED
    reason, message = only(p, r.COND_STALLED)
    assert (reason, message) == (r.PROGRESS_DEADLINE_EXCEEDED, "version 3 stalled")


def test_a_rollback_is_reconciling_from_its_first_write_and_stalled_once_done() -> None:
    _, p = rolling_back()
    assert p.record_first is not None  # the decision, written before any child is touched
    reason, message = kstatus(p.record_first)[r.COND_RECONCILING][1:]
    assert reason == r.ROLLING_BACK_REASON and "rolled back from version 2 to 1" in message
    assert list(kstatus(p.record_first)) == [r.COND_RECONCILING]
    first = p.record_first.condition(r.COND_RECONCILING)
    assert first is not None
    assert first.observed_generation == p.record_first.observed_generation
    assert p.status.phase == r.ROLLING_BACK
    reason, message = only(p, r.COND_RECONCILING)
    assert reason == r.ROLLING_BACK_REASON and message.startswith("rolling back: version 1")

    _, p = rolled_back()
    assert p.status.phase == r.ROLLED_BACK
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.ROLLED_BACK_REASON
    assert message == "version 2 was rolled back; serving 1 until the selector moves"


def test_the_selector_moving_on_after_a_rollback_reconciles_again() -> None:
    c, p = rolled_back()
    p = plan(then(c, p, resolution=resolved("3"), alerts=()))
    assert p.status.phase == r.PROGRESSING
    assert only(p, r.COND_RECONCILING)[0] == r.ROLLOUT_IN_PROGRESS  # Stalled is gone


def test_an_alert_with_no_version_to_go_back_to_is_stalled() -> None:
    c, p = healthy_on("1")
    p = plan(then(c, p, alerts=(alert("1"),)))
    assert p.status.phase == r.DEGRADED
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.NO_HEALTHY_VERSION and "no earlier healthy version" in message


def test_a_rollback_waiting_for_the_registry_is_reconciling() -> None:
    """The alert's rollback target could not be pre-flighted (registry down): the operator goes
    on by itself once the registry answers, so this is work under way, not a stall."""
    c, p = serving_v2_after_v1()
    down = Unservable(r.REGISTRY_UNREACHABLE, "connection refused")
    p = plan(then(c, p, alerts=(alert("2"),), unservable={"1": down}))
    assert p.status.phase == r.DEGRADED
    degraded = p.status.condition(r.COND_DEGRADED)
    assert degraded is not None and degraded.reason == r.REGISTRY_UNREACHABLE
    reason, message = only(p, r.COND_RECONCILING)
    assert reason == r.REGISTRY_UNREACHABLE
    assert "the rollback waits for the registry to confirm its target" in message


def test_awaiting_approval_is_stalled_with_the_command_that_approves() -> None:
    p = plan(ctx(version("3"), spec=GATED))
    assert p.status.phase == r.AWAITING_APPROVAL
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.APPROVAL_MISSING
    assert "modeldeploy approve fraud-detector 3 --stage production" in message

    c, p = serving_approved("3")
    p = plan(then(c, p, resolution=version("4")))
    assert p.status.phase == r.AWAITING_APPROVAL  # version 3 keeps serving
    reason, message = only(p, r.COND_STALLED)
    assert reason == r.APPROVAL_MISSING and "version 3 keeps serving" in message


def test_an_invalid_spec_is_stalled_and_observes_its_generation() -> None:
    _, healthy = healthy_on("3")
    p = plan(InvalidSpec(healthy.status, "spec.model: bad", T0 + timedelta(minutes=5), 7))
    assert p.status.phase == r.FAILED
    assert only(p, r.COND_STALLED) == (r.INVALID_SPEC, "spec.model: bad")
    assert p.status.observed_generation == 7


def test_a_canary_step_is_reconciling_and_names_the_step() -> None:
    spec = parse_spec(
        {
            "model": {"name": "fraud-detector", "alias": "champion"},
            "serving": {"replicas": 2},
            "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 10}, {"weight": 50}]}},
        }
    )
    c, p = healthy_on("1", spec=spec)
    p = plan(then(c, p, resolution=resolved("2")))
    assert p.status.canary is not None
    reason, message = only(p, r.COND_RECONCILING)
    assert reason == r.ROLLOUT_IN_PROGRESS
    assert "1/2 scaling" in message and "version 1 serves the rest" in message


@pytest.mark.parametrize("phase", r.PHASES)
def test_every_phase_other_than_healthy_says_reconciling_or_stalled(phase: str) -> None:
    """kstatus treats an object with neither condition True (and Ready not False) as Current:
    every phase that is not the spec served must say which of the two it is."""
    ready = Condition(r.READY, "False", "Any", "", iso(T0))
    status = with_kstatus(Status(phase=phase, conditions=(ready,)), T0, 1)
    found = kstatus(status)
    if phase == r.HEALTHY:
        assert found == {}
    else:
        assert len(found) == 1 and next(iter(found.values()))[0] == "True"


def test_a_stale_condition_of_the_other_kind_is_removed() -> None:
    stalled = Condition(r.COND_STALLED, "True", r.ROLLED_BACK_REASON, "old", iso(T0))
    status = with_kstatus(Status(phase=r.PROGRESSING, conditions=(stalled,)), T0, 2)
    assert list(kstatus(status)) == [r.COND_RECONCILING]
    assert with_kstatus(Status(phase=r.HEALTHY, conditions=(stalled,)), T0, 2).conditions == ()
