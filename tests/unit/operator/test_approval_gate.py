"""The approval gate (spec.model.requireApproval), told as stories through the pure planner.

The registry's answer carries the version's tags; an approval is the tag
modeldeploy.io/approved.<stage> written by `modeldeploy approve`. The gate holds only the
selector's version while the pods do not run it; what runs keeps running.
"""

from __future__ import annotations

from datetime import UTC, datetime

from modeldeploy.api import reasons as r
from modeldeploy.api.spec import parse_spec
from modeldeploy.governance import records
from modeldeploy.registry.types import ResolvedVersion
from modeldeploy.rollout.planner import Context, Plan, plan
from tests.unit.operator.test_planner import (
    MODEL,
    UNREACHABLE,
    cond,
    ctx,
    deployed_version,
    deployment,
    history,
    then,
)
from tests.unit.operator.test_rollback import alert

GATED = parse_spec(
    {
        "model": {"name": MODEL, "alias": "champion", "requireApproval": "production"},
        "serving": {"replicas": 2},
    }
)


def version(v: str, *approved_for: str, by: str = "alice") -> ResolvedVersion:
    at = records.timestamp(datetime(2025, 5, 1, 8, 0, tzinfo=UTC))
    tags = {
        records.approval_key(stage): records.Approval(stage, by, at, "looks good").to_json()
        for stage in approved_for
    }
    return ResolvedVersion(MODEL, v, run_id=f"run-{v}", source=f"runs:/run-{v}/m", tags=tags)


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def serving_approved(v: str = "3") -> tuple[Context, Plan]:
    c = ctx(version(v, "production"), spec=GATED)
    p = plan(c)
    c = then(c, p, deployment=deployment(v, spec=GATED))
    return c, plan(c)


def test_an_unapproved_first_version_is_not_rolled_out_and_the_status_says_which_approval() -> None:
    p = plan(ctx(version("3"), spec=GATED))
    assert p.apply == ()
    assert p.status.phase == r.AWAITING_APPROVAL
    assert cond(p, r.COND_APPROVED) == ("False", r.APPROVAL_MISSING)
    assert cond(p, r.READY) == ("False", r.APPROVAL_MISSING)
    message = p.status.condition(r.COND_APPROVED).message  # type: ignore[union-attr]
    assert "version 3" in message and "production" in message
    assert "modeldeploy approve fraud-detector 3 --stage production" in message
    assert p.status.resolved_version == "3" and p.status.serving_version is None
    assert reasons(p).count(r.EV_APPROVAL_REQUIRED) == 1
    assert p.new_version is None  # nothing to pre-flight: the gate comes first


def test_an_approved_version_rolls_out_and_the_condition_names_who_approved() -> None:
    p = plan(ctx(version("3", "production"), spec=GATED))
    assert deployed_version(p) == "3"
    assert p.status.phase == r.PROGRESSING
    assert cond(p, r.COND_APPROVED) == ("True", r.APPROVAL_GRANTED)
    assert "by alice" in p.status.condition(r.COND_APPROVED).message  # type: ignore[union-attr]
    assert r.EV_APPROVED in reasons(p)


def test_an_approval_for_another_stage_does_not_open_the_gate() -> None:
    p = plan(ctx(version("3", "staging"), spec=GATED))
    assert p.apply == () and p.status.phase == r.AWAITING_APPROVAL


def test_alias_move_to_an_unapproved_version_keeps_the_serving_one_until_it_is_approved() -> None:
    c, p = serving_approved("3")
    assert p.status.phase == r.HEALTHY

    c = then(c, p, resolution=version("4"))
    p = plan(c)
    assert deployed_version(p) == "3"  # what runs keeps running
    assert p.status.phase == r.AWAITING_APPROVAL
    assert (p.status.serving_version, p.status.resolved_version) == ("3", "4")
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    assert cond(p, r.COND_PROGRESSING) == ("False", r.APPROVAL_MISSING)
    assert cond(p, r.COND_APPROVED) == ("False", r.APPROVAL_MISSING)
    assert "version 3 keeps serving" in p.status.condition(r.COND_APPROVED).message  # type: ignore[union-attr]
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]  # no rollout started
    assert p.rollouts_started == ()
    assert reasons(p).count(r.EV_APPROVAL_REQUIRED) == 1

    # Polling again while it waits: the same status, no second Event.
    c = then(c, p)
    p2 = plan(c)
    assert p2.status.to_dict() == p.status.to_dict()  # nothing to write
    assert r.EV_APPROVAL_REQUIRED not in reasons(p2)

    # The approval arrives: version 4 rolls out, and the Event says who approved it.
    c = then(c, p2, resolution=version("4", "production", by="bob"))
    p3 = plan(c)
    assert deployed_version(p3) == "4"
    assert p3.status.phase == r.PROGRESSING
    assert p3.rollouts_started == ("4",)
    (approved,) = [e for e in p3.events if e.reason == r.EV_APPROVED]
    assert "version 4" in approved.message and "by bob" in approved.message


def test_a_revoked_approval_does_not_stop_the_serving_version_and_says_so() -> None:
    c, p = serving_approved("3")
    c = then(c, p, resolution=version("3"))  # the approval tag was deleted
    p = plan(c)
    assert deployed_version(p) == "3"
    assert p.status.phase == r.HEALTHY
    assert cond(p, r.COND_APPROVED) == ("False", r.SERVING_UNAPPROVED)


def test_a_rollback_does_not_wait_for_an_approval() -> None:
    c, p = serving_approved("3")
    c = then(c, p, resolution=version("4", "production"))
    p = plan(c)
    c = then(c, p, deployment=deployment("4", generation=3, spec=GATED))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "4")
    # Version 4 misbehaves; meanwhile version 3's approval was revoked. The rollback goes on.
    c = then(c, p, resolution=version("4", "production"), alerts=(alert("4"),))
    p = plan(c)
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("4", "3")
    assert deployed_version(p) == "3"


def test_registry_outage_while_waiting_keeps_serving_and_keeps_the_condition() -> None:
    c, p = serving_approved("3")
    c = then(c, p, resolution=version("4"))
    p = plan(c)
    c = then(c, p, resolution=UNREACHABLE)
    p = plan(c)
    assert deployed_version(p) == "3"
    assert cond(p, r.COND_APPROVED) == ("False", r.APPROVAL_MISSING)
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)


def test_removing_the_requirement_drops_the_condition_and_rolls_out() -> None:
    c, p = serving_approved("3")
    c = then(c, p, resolution=version("4"))
    p = plan(c)
    ungated = parse_spec(
        {"model": {"name": MODEL, "alias": "champion"}, "serving": {"replicas": 2}}
    )
    c = then(c, p, spec=ungated, generation=2)
    p = plan(c)
    assert p.status.condition(r.COND_APPROVED) is None
    assert deployed_version(p) == "4"


def test_a_malformed_approval_tag_is_no_approval() -> None:
    broken = ResolvedVersion(
        MODEL, "3", run_id="run-3", tags={records.approval_key("production"): "yes please"}
    )
    p = plan(ctx(broken, spec=GATED))
    assert p.apply == () and p.status.phase == r.AWAITING_APPROVAL


def test_the_rollout_event_names_who_promoted_the_version_to_the_alias_it_follows() -> None:
    spec = parse_spec({"model": {"name": MODEL, "alias": "production"}})
    promoted = records.Promotion("production", "bob", "2025-05-01T08:30:00.000Z", "staging", "2")
    tags = {records.promotion_key("production"): promoted.to_json()}
    res = ResolvedVersion(MODEL, "3", run_id="run-3", tags=tags)
    p = plan(ctx(res, spec=spec))
    (started,) = [e for e in p.events if e.reason == r.EV_ROLLOUT_STARTED]
    assert started.message.endswith("; promoted to production by bob at 2025-05-01T08:30:00.000Z")
    # A promotion to another stage says nothing about this alias.
    other = parse_spec({"model": {"name": MODEL, "alias": "staging"}})
    (started,) = [e for e in plan(ctx(res, spec=other)).events if e.reason == r.EV_ROLLOUT_STARTED]
    assert "promoted" not in started.message
