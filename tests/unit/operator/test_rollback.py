"""Automatic rollback: the pure assessment (`rollback.assess`) and what the planner makes of it.

Stories are built the way test_planner builds them (status through its dict form, realistic
Deployment objects); alerts are what AlertStore.firing hands the reconciler.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.alerts.store import AlertStore, FiringAlert
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import parse_spec
from modeldeploy.api.status import HistoryEntry, Status, iso, iso_ms
from modeldeploy.rollout.planner import PROGRESSING_RECHECK_SECONDS, Context, Plan, plan
from modeldeploy.rollout.rollback import Rollback, assess, last_healthy
from tests.unit.operator.test_planner import (
    MODEL,
    NAME,
    NAMESPACE,
    NOT_FOUND,
    SPEC,
    T0,
    UNREACHABLE,
    cond,
    deployed_version,
    deployment,
    event_reasons,
    healthy_on,
    history,
    resolved,
    then,
)

ERRORS, LATENCY, DRIFT = (
    names.ALERT_HIGH_ERROR_RATE,
    names.ALERT_HIGH_LATENCY,
    names.ALERT_DRIFT,
)
# Stories run a minute per step from T0; alerts are heard of later than any rollout in them
# (assess ignores alerts heard of before the current rollout of their version started).
HEARD = (T0 + timedelta(hours=1)).timestamp()


def alert(
    version: str,
    name: str = ERRORS,
    *,
    namespace: str = NAMESPACE,
    md: str = NAME,
    at: float = HEARD,
    summary: str = "5xx ratio 12% over 5m",
) -> FiringAlert:
    return FiringAlert(name, namespace, md, version, f"fp-{name}-{version}", at, summary)


def container_env(p: Plan) -> dict[str, str]:
    (dep,) = [o for o in p.apply if o["kind"] == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def through(p: Plan) -> Status:
    return Status.from_dict(p.status.to_dict())


def count(p: Plan, reason: str) -> int:
    return sum(1 for e in (*p.decision_events, *p.events) if e.reason == reason)


def same_outcome(a: Plan, b: Plan) -> bool:
    return (a.status.to_dict(), a.apply, a.events, a.rollback) == (
        b.status.to_dict(),
        b.apply,
        b.events,
        b.rollback,
    )


# --- stories -------------------------------------------------------------------------------


def serving_v2_after_v1(**kw: Any) -> tuple[Context, Plan]:
    """v1 rolled out and healthy, then the alias moved to v2, which rolled out too."""
    c, p = healthy_on("1", **kw)
    c = then(c, p, resolution=resolved("2"))
    p = plan(c)
    c = then(c, p, deployment=deployment("2", spec=c.spec, generation=3))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "2")
    return c, p


def rolling_back(a: FiringAlert | None = None) -> tuple[Context, Plan]:
    c, p = serving_v2_after_v1()
    c = then(c, p, alerts=(a or alert("2"),))
    return c, plan(c)


def rolled_back() -> tuple[Context, Plan]:
    """The rollback applied and the v1 Deployment complete again; v2's alert still firing."""
    c, p = rolling_back()
    c = then(c, p, deployment=deployment("1", generation=4))
    return c, plan(c)


# --- rule 1: the rollback ------------------------------------------------------------------


def test_alert_on_serving_version_rolls_back_to_last_succeeded_version() -> None:
    a = alert("2")
    _, p = rolling_back(a)
    assert deployed_version(p) == "1"
    env = container_env(p)
    assert (env["MODEL_URI"], env["MODEL_VERSION"]) == (f"models:/{MODEL}/1", "1")
    assert (p.status.model_uri, p.status.run_id) == (f"models:/{MODEL}/1", "run-1")
    assert p.status.rejected_versions == ("2",)
    assert p.status.phase == r.ROLLING_BACK
    assert p.rollback == Rollback(bad="2", good="1", alert=a)
    assert p.requeue_after == PROGRESSING_RECHECK_SECONDS
    # The registry still names 2; what serves is still 2 until the v1 rollout completes.
    assert (p.status.resolved_version, p.status.serving_version) == ("2", "2")


def test_rollback_records_the_bad_rollout_as_rolled_back_and_starts_the_good_one() -> None:
    c, p = rolling_back()
    assert history(p) == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_PROGRESSING),
    ]
    bad, good = p.status.history[1], p.status.history[2]
    assert bad.finished_at == iso_ms(c.now)
    assert bad.reason is not None and ERRORS in bad.reason
    assert good.started_at == iso_ms(c.now) and good.finished_at is None
    assert good.reason is not None and "rollback" in good.reason and ERRORS in good.reason
    assert good.run_id == "run-1"


def test_rollback_sets_rolled_back_condition_degraded_and_one_warning_event() -> None:
    _, p = rolling_back()
    assert cond(p, r.COND_ROLLED_BACK) == ("True", ERRORS)
    msg = p.status.condition(r.COND_ROLLED_BACK).message  # type: ignore[union-attr]
    assert "from version 2 to 1" in msg and "5xx ratio 12% over 5m" in msg
    assert cond(p, r.COND_DEGRADED) == ("True", r.ROLLED_BACK_REASON)
    assert cond(p, r.READY) == ("False", r.ROLLOUT_IN_PROGRESS)
    assert count(p, r.EV_ROLLED_BACK) == 1
    # Announced with the decision (posted once the decision is stored, before the apply).
    (ev,) = [e for e in p.decision_events if e.reason == r.EV_ROLLED_BACK]
    assert ev.type == "Warning" and ERRORS in ev.message
    assert ("Normal", r.EV_PHASE_CHANGED) in event_reasons(p)


def test_rolled_back_deployment_completing_ends_in_phase_rolled_back() -> None:
    c, p = rolled_back()
    assert p.status.phase == r.ROLLED_BACK
    assert p.status.serving_version == "1"
    assert history(p) == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_SUCCEEDED),
    ]
    assert p.status.history[2].finished_at == iso_ms(c.now)
    assert p.status.rejected_versions == ("2",)
    assert deployed_version(p) == "1"
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    assert cond(p, r.COND_ROLLED_BACK) == ("True", ERRORS)
    assert cond(p, r.COND_DEGRADED) == ("True", r.ROLLED_BACK_REASON)
    assert p.rollback is None and p.requeue_after is None
    assert p.rollouts_completed == (("1", r.OUTCOME_SUCCEEDED),)
    assert count(p, r.EV_ROLLED_BACK) == 0


def test_the_rollback_also_happens_while_the_registry_is_unreachable() -> None:
    c, p = serving_v2_after_v1()
    p = plan(then(c, p, resolution=UNREACHABLE, alerts=(alert("2"),)))
    assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("2", "1")


def test_an_alert_during_the_bad_rollout_rolls_back_before_it_completes() -> None:
    c, p = healthy_on("1")
    c = then(c, p, resolution=resolved("2"))
    p = plan(c)
    # The template already runs 2; its first pods fail.
    c = then(c, p, deployment=deployment("2", "rolling", generation=3), alerts=(alert("2"),))
    p = plan(c)
    assert deployed_version(p) == "1"
    assert history(p) == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_PROGRESSING),
    ]
    assert p.status.phase == r.ROLLING_BACK
    # serving never moved to 2
    assert p.status.serving_version == "1"


def test_rollback_goes_to_the_newest_succeeded_version() -> None:
    c, p = serving_v2_after_v1()
    c = then(c, p, resolution=resolved("3"))
    p = plan(c)
    c = then(c, p, deployment=deployment("3", generation=4))
    p = plan(c)
    p = plan(then(c, p, alerts=(alert("3"),)))
    assert deployed_version(p) == "2"
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("3", "2")


def test_two_alerts_for_the_bad_version_cause_one_rollback_named_after_the_first() -> None:
    c, p = serving_v2_after_v1()
    first, second = alert("2", LATENCY, at=HEARD), alert("2", ERRORS, at=HEARD + 60)
    p = plan(then(c, p, alerts=(first, second)))
    assert p.rollback is not None and p.rollback.alert == first
    assert count(p, r.EV_ROLLED_BACK) == 1
    assert cond(p, r.COND_ROLLED_BACK) == ("True", LATENCY)
    assert history(p)[-1] == ("1", r.OUTCOME_PROGRESSING)
    assert len(p.status.history) == 3


# --- rule 2: idempotence -------------------------------------------------------------------


def test_same_alert_still_firing_after_rollback_changes_nothing() -> None:
    c, p = rolled_back()
    again = plan(then(c, p))  # the alert is still in c.alerts
    assert again.rollback is None
    assert again.events == ()
    assert again.status.to_dict() == p.status.to_dict()
    assert deployed_version(again) == "1"


def test_same_alert_while_the_good_version_is_still_rolling_out_changes_nothing() -> None:
    c, p = rolling_back()
    c = then(c, p, deployment=deployment("1", "rolling", generation=4))
    again = plan(c)
    assert again.rollback is None
    assert again.events == ()
    assert history(again) == history(p)
    assert again.status.rejected_versions == ("2",)
    assert again.status.phase == r.ROLLING_BACK


def test_the_same_notification_delivered_twice_causes_one_rollback() -> None:
    store = AlertStore()
    raw = {
        "status": "firing",
        "labels": {
            "alertname": ERRORS,
            "namespace": NAMESPACE,
            "modeldeployment": NAME,
            "model_version": "2",
            "severity": "critical",
        },
        "annotations": {"summary": "errors"},
        "startsAt": "2025-05-01T09:10:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "c0ffee0000000001",
    }
    payload = {"version": "4", "status": "firing", "receiver": "modeldeploy", "alerts": [raw]}
    key = (NAMESPACE, NAME)
    c, p = serving_v2_after_v1()
    rollbacks = 0
    deliveries = [(payload, "2"), (payload, "1")]  # the second after the rollback applied
    for i, (body, running) in enumerate(deliveries):
        store.apply_notification(body, now=HEARD + i)
        c = then(c, p, alerts=store.firing(key), deployment=deployment(running, generation=3 + i))
        p = plan(c)
        rollbacks += p.rollback is not None
    assert rollbacks == 1
    assert p.status.rejected_versions == ("2",)
    assert len(p.status.history) == 3


def test_a_retried_rollback_after_a_failed_apply_does_not_roll_back_twice() -> None:
    c, p = rolling_back()
    # Status was written, the apply failed: the Deployment still runs 2, the alert fires on.
    again = plan(then(c, p))
    assert deployed_version(again) == "1"
    assert again.rollback is None
    assert again.status.rejected_versions == ("2",)
    assert history(again) == history(p)
    assert count(again, r.EV_ROLLED_BACK) == 0


def test_repeated_failed_applies_never_redeploy_the_rejected_version() -> None:
    c, p = rolling_back()
    for _ in range(10):
        c = then(c, p)  # the apply keeps failing: the Deployment still runs 2
        p = plan(c)
        assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)


# --- rule 3: rejection held, then cleared --------------------------------------------------


def test_selector_still_naming_the_rejected_version_keeps_the_good_one() -> None:
    c, p = rolled_back()
    for _ in range(3):  # the alert resolves, the registry keeps answering 2
        c = then(c, p, alerts=())
        p = plan(c)
        assert deployed_version(p) == "1"
        assert p.status.phase == r.ROLLED_BACK
        assert p.status.rejected_versions == ("2",)
        assert p.events == () and p.rollouts_started == ()


def test_selector_moving_to_a_third_version_clears_the_rejection_and_deploys_it() -> None:
    c, p = rolled_back()
    p = plan(then(c, p, resolution=resolved("3"), alerts=()))
    assert deployed_version(p) == "3"
    assert p.status.rejected_versions == ()
    assert cond(p, r.COND_ROLLED_BACK) == ("False", r.REJECTION_CLEARED)
    assert ("Normal", r.EV_REJECTION_CLEARED) in event_reasons(p)
    assert p.status.phase == r.PROGRESSING
    assert cond(p, r.COND_DEGRADED) == ("False", r.AS_EXPECTED)
    assert history(p)[-1] == ("3", r.OUTCOME_PROGRESSING)
    assert p.rollouts_started == ("3",)


def test_rejection_cleared_event_is_not_repeated() -> None:
    c, p = rolled_back()
    c = then(c, p, resolution=resolved("3"), alerts=())
    p = plan(c)
    p = plan(then(c, p, deployment=deployment("3", generation=5)))
    assert count(p, r.EV_REJECTION_CLEARED) == 0
    assert cond(p, r.COND_ROLLED_BACK) == ("False", r.REJECTION_CLEARED)
    assert p.status.phase == r.HEALTHY


def test_selector_moving_back_to_the_once_rejected_version_deploys_it_again() -> None:
    c, p = rolled_back()
    c = then(c, p, resolution=resolved("3"), alerts=())
    p = plan(c)
    c = then(c, p, deployment=deployment("3", generation=5))
    p = plan(c)
    c = then(c, p, resolution=resolved("2"))
    p = plan(c)
    assert deployed_version(p) == "2"
    assert p.status.rejected_versions == ()
    assert history(p)[-1] == ("2", r.OUTCOME_PROGRESSING)
    c = then(c, p, deployment=deployment("2", generation=6))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "2")


def test_allow_version_annotation_clears_the_rejection_of_that_version() -> None:
    c, p = rolled_back()
    p = plan(then(c, p, alerts=(), allow_version="2"))
    assert deployed_version(p) == "2"
    assert p.status.rejected_versions == ()
    assert cond(p, r.COND_ROLLED_BACK) == ("False", r.REJECTION_CLEARED)
    assert ("Normal", r.EV_REJECTION_CLEARED) in event_reasons(p)
    assert p.status.phase == r.PROGRESSING


def test_allow_version_naming_another_version_clears_nothing() -> None:
    c, p = rolled_back()
    p2 = plan(then(c, p, alerts=(), allow_version="7"))
    assert deployed_version(p2) == "1"
    assert p2.status.rejected_versions == ("2",)
    assert p2.events == ()


def test_allow_version_is_recorded_as_handled() -> None:
    c, p = rolled_back()
    p = plan(then(c, p, alerts=(), allow_version="2"))
    assert p.status.allow_version_handled == "2"
    assert through(p).allow_version_handled == "2"


def test_a_left_over_allow_version_annotation_does_not_undo_a_later_rollback() -> None:
    c, p = rolled_back()
    c = then(c, p, alerts=(), allow_version="2")
    p = plan(c)
    assert deployed_version(p) == "2"
    c = then(c, p, deployment=deployment("2", "rolling", generation=5), alerts=(alert("2"),))
    p = plan(c)  # v2 runs again and fires again: rolled back a second time
    assert p.rollback is not None and deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)
    for gen in (6, 7):  # the annotation is unchanged: the new rejection holds
        c = then(c, p, deployment=deployment("1", generation=gen))
        p = plan(c)
        assert deployed_version(p) == "1"
        assert p.status.rejected_versions == ("2",)
        assert p.rollback is None
    assert p.status.phase == r.ROLLED_BACK


def test_allow_version_removed_and_set_again_clears_a_later_rejection() -> None:
    c, p = rolled_back()
    c = then(c, p, alerts=(), allow_version="2")
    p = plan(c)
    c = then(c, p, deployment=deployment("2", "rolling", generation=5), alerts=(alert("2"),))
    p = plan(c)
    c = then(c, p, deployment=deployment("1", generation=6), alerts=(), allow_version=None)
    p = plan(c)
    assert p.status.rejected_versions == ("2",)
    assert p.status.allow_version_handled is None
    p = plan(then(c, p, allow_version="2"))
    assert deployed_version(p) == "2"
    assert p.status.rejected_versions == ()


def test_allow_version_set_before_the_rollback_does_not_clear_it() -> None:
    """The annotation acts once per value: set while nothing was rejected, it is spent."""
    c, p = serving_v2_after_v1()
    c = then(c, p, allow_version="2")
    p = plan(c)
    assert p.status.allow_version_handled == "2"
    c = then(c, p, alerts=(alert("2"),))
    p = plan(c)
    assert p.rollback is not None
    p = plan(then(c, p, deployment=deployment("1", generation=4)))
    assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)


# --- alerts heard of before the current rollout of their version ----------------------------


def test_an_alert_heard_before_the_current_rollout_of_its_version_is_ignored() -> None:
    c, p = serving_v2_after_v1()
    v2_started = p.status.history[-1].started_at
    assert v2_started == iso_ms(T0 + timedelta(minutes=2))
    stale = alert("2", at=(T0 + timedelta(minutes=1)).timestamp())
    quiet = plan(then(c, p))
    p2 = plan(then(c, p, alerts=(stale,)))
    assert same_outcome(p2, quiet)
    # heard in the very second the rollout started: it counts
    boundary = alert("2", at=(T0 + timedelta(minutes=2)).timestamp())
    assert plan(then(c, p, alerts=(boundary,))).rollback is not None


def test_an_old_alert_of_a_redeployed_version_does_not_roll_it_back_again() -> None:
    """v2 rolled back, the alias goes to 3 and back to 2: the store may still hold v2's alert
    from the first episode (heard of then); only an alert heard of since counts."""
    first = alert("2", at=(T0 + timedelta(minutes=4)).timestamp())
    c, p = rolling_back(first)
    c = then(c, p, deployment=deployment("1", generation=4))
    p = plan(c)
    c = then(c, p, resolution=resolved("3"))
    p = plan(c)
    c = then(c, p, deployment=deployment("3", generation=5))
    p = plan(c)
    c = then(c, p, resolution=resolved("2"))
    p = plan(c)
    c = then(c, p, deployment=deployment("2", generation=6))
    p = plan(c)
    assert p.rollback is None and deployed_version(p) == "2"
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "2")
    fresh = alert("2", LATENCY, at=c.now.timestamp() + 30)
    p = plan(then(c, p, alerts=(first, fresh)))
    assert p.rollback is not None and p.rollback.alert == fresh
    assert (p.rollback.bad, p.rollback.good) == ("2", "3")


def test_changing_the_model_name_does_not_inherit_the_old_models_rejection() -> None:
    c, p = rolled_back()
    other = parse_spec({"model": {"name": "fraud-detector-v2", "alias": "champion"}})
    new = replace(resolved("2"), name="fraud-detector-v2")
    p = plan(then(c, p, spec=other, resolution=new, alerts=(), generation=2))
    assert deployed_version(p) == "2"
    assert container_env(p)["MODEL_URI"] == new.uri


# --- rule 4: alerts that change nothing ----------------------------------------------------


@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(alert("2", DRIFT), id="not-in-onAlerts-by-default"),
        pytest.param(alert("1"), id="another-version"),
        pytest.param(alert("20"), id="version-with-the-same-prefix"),
        pytest.param(alert("2", "KubePodCrashLooping"), id="foreign-alert-name"),
    ],
)
def test_alerts_not_for_the_serving_version_or_not_listed_change_nothing(
    stray: FiringAlert,
) -> None:
    c, p = serving_v2_after_v1()
    quiet = plan(then(c, p))
    noisy = plan(then(c, p, alerts=(stray,)))
    assert same_outcome(noisy, quiet)
    assert noisy.rollback is None and noisy.status.rejected_versions == ()
    assert deployed_version(noisy) == "2"


def test_on_alerts_decides_which_alerts_roll_back() -> None:
    spec = parse_spec(
        {
            "model": {"name": MODEL, "alias": "champion"},
            "serving": {"replicas": 2},
            "rollback": {"onAlerts": [DRIFT]},
        }
    )
    c, p = serving_v2_after_v1(spec=spec)
    assert plan(then(c, p, alerts=(alert("2", ERRORS),))).rollback is None
    p2 = plan(then(c, p, alerts=(alert("2", DRIFT),)))
    assert p2.rollback is not None and deployed_version(p2) == "1"


def test_alerts_with_nothing_deployed_change_nothing() -> None:
    c = then(*healthy_on("1"), deployment=None, alerts=(alert("1"),))
    p = plan(c)
    assert p.rollback is None and p.status.rejected_versions == ()


# --- rule 5: nothing to roll back to -------------------------------------------------------


def test_first_version_bad_degrades_with_no_healthy_version_and_keeps_serving() -> None:
    c, p = healthy_on("1")
    c = then(c, p, alerts=(alert("1"),))
    p = plan(c)
    assert deployed_version(p) == "1"
    assert p.rollback is None and p.status.rejected_versions == ()
    assert cond(p, r.COND_DEGRADED) == ("True", r.NO_HEALTHY_VERSION)
    assert p.status.condition(r.COND_ROLLED_BACK) is None
    assert history(p) == [("1", r.OUTCOME_SUCCEEDED)]
    assert p.status.serving_version == "1"
    (ev,) = [e for e in p.events if e.reason == r.EV_ALERT_FIRING]
    assert ev.type == "Warning" and ERRORS in ev.message and "version 1" in ev.message
    assert p.status.phase == r.DEGRADED  # like every other Degraded=True case

    again = plan(then(c, p))
    assert again.events == ()
    assert again.status.to_dict() == p.status.to_dict()

    resolved_ = plan(then(c, p, alerts=()))
    assert cond(resolved_, r.COND_DEGRADED) == ("False", r.AS_EXPECTED)
    assert resolved_.status.phase == r.HEALTHY
    assert [e.reason for e in resolved_.events] == [r.EV_PHASE_CHANGED]


def test_first_version_bad_during_its_first_rollout_has_no_healthy_version() -> None:
    c = then(*healthy_on("1"), deployment=deployment("1", "rolling"), alerts=(alert("1"),))
    c = replace(
        c,
        status=replace(c.status, history=(HistoryEntry("1", iso(c.now), r.OUTCOME_PROGRESSING),)),
    )
    p = plan(c)
    assert p.rollback is None
    assert cond(p, r.COND_DEGRADED) == ("True", r.NO_HEALTHY_VERSION)
    assert deployed_version(p) == "1"


def test_unanswered_alert_sets_phase_degraded() -> None:
    c, p = healthy_on("1")
    p = plan(then(c, p, alerts=(alert("1"),)))
    assert p.status.phase == r.DEGRADED


def test_rollback_disabled_only_degrades_and_warns() -> None:
    spec = parse_spec(
        {
            "model": {"name": MODEL, "alias": "champion"},
            "serving": {"replicas": 2},
            "rollback": {"enabled": False},
        }
    )
    c, p = serving_v2_after_v1(spec=spec)
    c = then(c, p, alerts=(alert("2"),))
    p2 = plan(c)
    assert deployed_version(p2) == "2"
    assert p2.rollback is None and p2.status.rejected_versions == ()
    assert history(p2) == history(p)
    assert cond(p2, r.COND_DEGRADED) == ("True", r.ROLLBACK_DISABLED)
    assert p2.status.condition(r.COND_ROLLED_BACK) is None
    assert p2.status.phase == r.DEGRADED
    assert [(e.type, e.reason) for e in p2.events] == [
        ("Warning", r.EV_ALERT_FIRING),
        ("Warning", r.EV_PHASE_CHANGED),
    ]
    assert "rollback is disabled" in p2.events[0].message
    assert plan(then(c, p2)).events == ()


# --- rule 6: a second bad version ----------------------------------------------------------


def test_a_second_bad_version_rolls_back_to_the_same_good_version() -> None:
    c, p = rolled_back()
    c = then(c, p, resolution=resolved("3"), alerts=())
    p = plan(c)
    c = then(c, p, deployment=deployment("3", generation=5))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "3")
    # v2's rejection was cleared by the move, but v2 never succeeded long enough: not a candidate.
    c = then(c, p, alerts=(alert("3"),))
    p = plan(c)
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("3", "1")
    assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("3",)
    assert history(p) == [
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_SUCCEEDED),
        ("3", r.OUTCOME_ROLLED_BACK),
        ("1", r.OUTCOME_PROGRESSING),
    ]
    assert cond(p, r.COND_ROLLED_BACK) == ("True", ERRORS)
    c = then(c, p, deployment=deployment("1", generation=6))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.ROLLED_BACK, "1")


def test_a_third_bad_version_while_the_selector_skips_ahead_still_lands_on_v1() -> None:
    c, p = rolled_back()
    for bad, gen in (("3", 5), ("4", 7)):
        c = then(c, p, resolution=resolved(bad), alerts=())
        p = plan(c)
        c = then(c, p, deployment=deployment(bad, "rolling", generation=gen), alerts=(alert(bad),))
        p = plan(c)
        assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == (bad, "1")
        c = then(c, p, deployment=deployment("1", generation=gen + 1))
        p = plan(c)
        assert (p.status.phase, p.status.rejected_versions) == (r.ROLLED_BACK, (bad,))


# --- rule 7: registry outage ---------------------------------------------------------------


@pytest.mark.parametrize("failure", [UNREACHABLE, NOT_FOUND], ids=["unreachable", "not-found"])
def test_registry_failure_while_rolled_back_keeps_the_good_version_and_the_rejection(
    failure: Any,
) -> None:
    c, p = rolled_back()
    c = then(c, p, resolution=failure, alerts=())
    p = plan(c)
    assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)
    assert p.status.phase == r.ROLLED_BACK
    assert p.status.serving_version == "1"
    # and the registry answering 2 again still keeps it rejected
    p = plan(then(c, p, resolution=resolved("2")))
    assert deployed_version(p) == "1"
    assert p.status.rejected_versions == ("2",)
    assert p.status.phase == r.ROLLED_BACK


# --- assess and last_healthy directly ------------------------------------------------------


def _hist(*entries: tuple[str, str]) -> tuple[HistoryEntry, ...]:
    return tuple(HistoryEntry(v, "2025-05-01T09:00:00Z", o, run_id=f"run-{v}") for v, o in entries)


def test_last_healthy_skips_excluded_and_unsuccessful_entries() -> None:
    h = _hist(
        ("1", r.OUTCOME_SUCCEEDED),
        ("2", r.OUTCOME_SUCCEEDED),
        ("3", r.OUTCOME_FAILED),
        ("4", r.OUTCOME_SUPERSEDED),
        ("5", r.OUTCOME_ROLLED_BACK),
    )
    assert last_healthy(h, set()) == h[1]
    assert last_healthy(h, {"2"}) == h[0]
    assert last_healthy(h, {"1", "2"}) is None
    assert last_healthy((), set()) is None


def test_assess_keeps_rejections_when_the_registry_did_not_answer() -> None:
    st = Status(rejected_versions=("2",), history=_hist(("1", r.OUTCOME_SUCCEEDED)))
    v = assess(SPEC, st, serving="1", selected=None, alerts=(), allow_version=None)
    assert (v.rejected, v.cleared, v.override, v.rollback) == (("2",), (), None, None)


def test_assess_overrides_a_selected_rejected_version_with_the_last_healthy_one() -> None:
    st = Status(rejected_versions=("2",), history=_hist(("1", r.OUTCOME_SUCCEEDED)))
    v = assess(SPEC, st, serving="1", selected="2", alerts=(), allow_version=None)
    assert v.override is not None
    assert (v.override.version, v.override.uri, v.override.run_id) == (
        "1",
        f"models:/{MODEL}/1",
        "run-1",
    )


def test_assess_clears_only_rejections_the_selector_or_annotation_left() -> None:
    st = Status(rejected_versions=("2",), history=_hist(("1", r.OUTCOME_SUCCEEDED)))
    assert assess(SPEC, st, "1", "3", (), None).cleared == ("2",)
    assert assess(SPEC, st, "1", "2", (), "2").cleared == ("2",)
    assert assess(SPEC, st, "1", "2", (), "3").cleared == ()


def test_assess_reports_why_an_alert_went_unanswered() -> None:
    st = Status(history=_hist(("1", r.OUTCOME_SUCCEEDED)))
    v = assess(SPEC, st, "1", "1", (alert("1"),), None)
    assert (v.unanswered, v.reason, v.rollback) == (alert("1"), r.NO_HEALTHY_VERSION, None)
    off = replace(SPEC, rollback=replace(SPEC.rollback, enabled=False))
    st2 = Status(history=_hist(("1", r.OUTCOME_SUCCEEDED), ("2", r.OUTCOME_SUCCEEDED)))
    v = assess(off, st2, "2", "2", (alert("2"),), None)
    assert (v.unanswered, v.reason, v.rollback) == (alert("2"), r.ROLLBACK_DISABLED, None)
