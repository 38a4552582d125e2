"""Canary and blue-green delivery, told as stories through the pure planner.

Each story starts with version 1 serving on two replicas and the alias moving to version 2. The
canary Deployment is observed the way the reconciler observes it (a rendered object with the
status the deployment controller reports); analyses arrive as the judge's records.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from modeldeploy import names
from modeldeploy.analysis.types import Measurement, VersionSample
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import ModelDeploymentSpec, parse_spec
from modeldeploy.api.status import AnalysisRecord, iso
from modeldeploy.render import objects as render
from modeldeploy.rollout import analysis as verdicts
from modeldeploy.rollout import progressive
from modeldeploy.rollout.deployment import DeploymentState
from modeldeploy.rollout.planner import Context, Plan, plan
from tests.unit.operator.test_planner import (
    IMAGE,
    MODEL,
    NAME,
    NAMESPACE,
    TRACKING_URI,
    UID,
    UNREACHABLE,
    cond,
    ctx,
    deployment,
    deployment_object,
    resolved,
    then,
)
from tests.unit.operator.test_rollback import alert


def strategy_spec(strategy: dict[str, Any], **serving: Any) -> ModelDeploymentSpec:
    return parse_spec(
        {
            "model": {"name": MODEL, "alias": "champion"},
            "serving": {"replicas": 2, **serving},
            "strategy": {"analysis": {"interval": "5s", "minRequests": 20}, **strategy},
        }
    )


CANARY = strategy_spec(
    {
        "type": "Canary",
        "canary": {"steps": [{"weight": 10, "duration": "30s"}, {"weight": 50, "duration": "30s"}]},
    }
)
ROUTED = strategy_spec(
    {
        "type": "Canary",
        "canary": {
            "steps": [{"weight": 10, "duration": "30s"}],
            "trafficRouting": {"httpRoute": {"name": "web"}},
        },
    }
)
BLUE_GREEN = strategy_spec({"type": "BlueGreen", "blueGreen": {"duration": "30s"}})


def canary_dep(spec: ModelDeploymentSpec, version: str, replicas: int) -> DeploymentState:
    """The canary Deployment, complete for `replicas`."""
    obj = render.build_deployment(
        render.RenderContext(
            name=NAME,
            namespace=NAMESPACE,
            uid=UID,
            spec=spec,
            version=version,
            model_uri=f"models:/{MODEL}/{version}",
            run_id=f"run-{version}",
            image=IMAGE,
            tracking_uri=TRACKING_URI,
            track=names.TRACK_CANARY,
            replicas=replicas,
        )
    )
    obj["metadata"]["generation"] = 1
    obj["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    return DeploymentState.from_object(obj)


def serving_v1(spec: ModelDeploymentSpec) -> tuple[Context, Plan]:
    c = ctx(resolved("1"), spec=spec)
    c = then(c, plan(c), deployment=deployment("1", spec=spec))
    p = plan(c)
    assert p.status.phase == r.HEALTHY and p.status.canary is None
    return c, p


def moved_to_v2(spec: ModelDeploymentSpec) -> tuple[Context, Plan]:
    c, p = serving_v1(spec)
    c = then(c, p, resolution=resolved("2"))
    return c, plan(c)


def objects(p: Plan) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in p.apply}


def version_of(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["metadata"]["labels"][names.LABEL_MODEL_VERSION])


def record(step: int, verdict: str, c: Context, message: str = "") -> AnalysisRecord:
    return AnalysisRecord(step, verdict, iso(c.now), message or verdict)


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def at_step_analysing(spec: ModelDeploymentSpec) -> tuple[Context, Plan]:
    """Version 2's canary pods ready: step 0 analysing."""
    c, p = moved_to_v2(spec)
    replicas = progressive.canary_replicas(spec, 2, p.status.canary.weight)  # type: ignore[union-attr]
    c = then(c, p, canary_deployment=canary_dep(spec, "2", replicas), now=c.now)
    p = plan(c)
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_ANALYSING
    return c, p


def test_a_new_version_starts_as_a_canary_beside_the_stable_version() -> None:
    _, p = moved_to_v2(CANARY)
    objs = objects(p)
    assert version_of(objs[("Deployment", NAME)]) == "1"  # the stable one keeps serving
    canary = objs[("Deployment", f"{NAME}-canary")]
    assert version_of(canary) == "2" and canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"][names.LABEL_TRACK] == names.TRACK_CANARY
    # Without a route both tracks sit behind the one Service, and no second Service exists.
    assert names.LABEL_TRACK not in objs[("Service", NAME)]["spec"]["selector"]
    assert ("Service", f"{NAME}-canary") not in objs
    cs = p.status.canary
    assert cs is not None and (cs.version, cs.step, cs.weight, cs.state) == (
        "2",
        0,
        10,
        r.CANARY_SCALING,
    )
    assert p.status.phase == r.PROGRESSING and p.status.serving_version == "1"
    assert r.EV_CANARY_STARTED in reasons(p)
    assert cond(p, r.COND_ANALYSIS) == ("Unknown", r.AWAITING_ANALYSIS)
    assert p.new_version == "2"  # the canary's version is pre-flighted like any new one
    assert p.status.history[-1].version == "2"
    assert p.status.history[-1].outcome == r.OUTCOME_PROGRESSING


def test_the_step_starts_when_its_pods_are_ready_and_the_weight_is_the_ready_share() -> None:
    c, p = at_step_analysing(CANARY)
    cs = p.status.canary
    assert cs is not None and cs.step_started_at == iso(c.now)
    assert cs.effective_weight == 33  # one canary pod beside two stable ones
    assert r.EV_CANARY_STEP in reasons(p)
    assert p.requeue_after == 5.0  # the analysis interval
    assert progressive.analysis_due(p.status, CANARY, c.now) is None  # not a whole interval yet
    later = c.now + timedelta(seconds=6)
    assert progressive.analysis_due(p.status, CANARY, later) == 6.0


def test_a_pass_before_the_step_ends_holds_the_step_and_one_at_its_end_moves_on() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, now=c.now + timedelta(seconds=10))
    p = plan(replace(c, analysis=record(0, verdicts.PASSED, c)))
    cs = p.status.canary
    assert cs is not None and (cs.step, cs.state) == (0, r.CANARY_ANALYSING)
    assert cond(p, r.COND_ANALYSIS) == ("True", r.ANALYSIS_PASSED)
    c = then(c, p, now=c.now + timedelta(seconds=25))
    p = plan(replace(c, analysis=record(0, verdicts.PASSED, c)))
    cs = p.status.canary
    assert cs is not None and (cs.step, cs.weight, cs.state) == (1, 50, r.CANARY_SCALING)
    assert objects(p)[("Deployment", f"{NAME}-canary")]["spec"]["replicas"] == 2
    assert [a.verdict for a in cs.analysis] == [verdicts.PASSED]  # step 0's record is kept


def promote(spec: ModelDeploymentSpec) -> tuple[Context, Plan]:
    """Through every step to Promoting."""
    c, p = at_step_analysing(spec)
    for _ in range(len(spec.strategy.steps)):
        c = then(c, p, now=c.now + timedelta(seconds=31))
        p = plan(replace(c, analysis=record(p.status.canary.step, verdicts.PASSED, c)))  # type: ignore[union-attr]
        cs = p.status.canary
        assert cs is not None
        if cs.state == r.CANARY_PROMOTING:
            return c, p
        replicas = progressive.canary_replicas(spec, 2, cs.weight)
        c = then(c, p, canary_deployment=canary_dep(spec, "2", replicas), now=c.now)
        p = plan(c)
    raise AssertionError("never promoted")


def test_the_last_passing_step_promotes_and_the_canary_goes_once_the_stable_runs_it() -> None:
    c, p = promote(CANARY)
    assert r.EV_CANARY_PROMOTING in reasons(p)
    objs = objects(p)
    assert version_of(objs[("Deployment", NAME)]) == "2"  # the stable Deployment rolls to v2
    assert ("Deployment", f"{NAME}-canary") in objs  # the canary serves until then
    # The stable rolls out: the canary stays.
    c = then(c, p, deployment=deployment("2", "rolling", spec=CANARY))
    p = plan(c)
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_PROMOTING
    assert p.delete == ()
    c = then(c, p, deployment=deployment("2", spec=CANARY))
    p = plan(c)
    assert p.status.canary is None and p.status.phase == r.HEALTHY
    assert p.status.serving_version == "2"
    assert set(p.delete) == {
        ("apps/v1", "Deployment", f"{NAME}-canary"),
        ("v1", "Service", f"{NAME}-canary"),
    }
    assert p.status.history[-1].outcome == r.OUTCOME_SUCCEEDED
    assert p.status.condition(r.COND_ANALYSIS) is None


def test_a_failed_analysis_rolls_the_canary_back_through_the_rollback_path() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, now=c.now + timedelta(seconds=6))
    p = plan(replace(c, analysis=record(0, verdicts.FAILED, c, "error rate 0.5 > 0.05")))
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("2", "1")
    assert p.rollback.alert.name == names.CANARY_ANALYSIS
    assert p.status.rejected_versions == ("2",)
    assert p.record_first is not None and p.record_first.rejected_versions == ("2",)
    assert cond(p, r.COND_ROLLED_BACK) == ("True", names.CANARY_ANALYSIS)
    assert "error rate 0.5" in p.status.condition(r.COND_ROLLED_BACK).message  # type: ignore[union-attr]
    assert p.status.canary is None
    assert ("apps/v1", "Deployment", f"{NAME}-canary") in p.delete
    assert version_of(objects(p)[("Deployment", NAME)]) == "1"
    assert p.status.phase == r.ROLLED_BACK
    bad = [h for h in p.status.history if h.version == "2"][-1]
    assert bad.outcome == r.OUTCOME_ROLLED_BACK
    assert bad.reason == f"{names.CANARY_ANALYSIS} failed for version 2"


def test_a_rollback_alert_for_the_canary_version_rolls_it_back() -> None:
    c, p = at_step_analysing(CANARY)
    fired = alert("2", at=(c.now + timedelta(seconds=3)).timestamp())
    c = then(c, p, now=c.now + timedelta(seconds=4), alerts=(fired,))
    p = plan(c)
    assert p.rollback is not None and p.rollback.alert.name == fired.name
    assert p.status.rejected_versions == ("2",) and p.status.canary is None


def test_no_traffic_and_no_prometheus_hold_the_step_never_pass_it() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, now=c.now + timedelta(seconds=10))
    p = plan(replace(c, analysis=record(0, verdicts.INCONCLUSIVE, c, "3 canary requests")))
    cs = p.status.canary
    assert cs is not None and cs.state == r.CANARY_ANALYSING  # the step is not over yet
    assert cond(p, r.COND_ANALYSIS) == ("False", r.ANALYSIS_INCONCLUSIVE)
    c = then(c, p, now=c.now + timedelta(seconds=30))
    p = plan(replace(c, analysis=record(0, verdicts.INCONCLUSIVE, c, "3 canary requests")))
    cs = p.status.canary
    assert cs is not None and (cs.step, cs.state) == (0, r.CANARY_HOLDING)
    assert r.EV_CANARY_HOLDING in reasons(p)
    c = then(c, p, now=c.now + timedelta(seconds=6))
    p = plan(replace(c, analysis=verdicts.unavailable(0, c.now, "connection refused")))
    cs = p.status.canary
    assert cs is not None and (cs.step, cs.state) == (0, r.CANARY_HOLDING)
    assert cond(p, r.COND_ANALYSIS) == ("False", r.ANALYSIS_UNAVAILABLE)
    assert p.rollback is None and p.status.rejected_versions == ()


def test_an_alias_move_mid_canary_restarts_it_on_the_new_version() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, resolution=resolved("3"))
    p = plan(c)
    cs = p.status.canary
    assert cs is not None and (cs.version, cs.step, cs.state) == ("3", 0, r.CANARY_SCALING)
    assert version_of(objects(p)[("Deployment", f"{NAME}-canary")]) == "3"
    outcomes = {h.version: h.outcome for h in p.status.history}
    assert outcomes["2"] == r.OUTCOME_SUPERSEDED and outcomes["3"] == r.OUTCOME_PROGRESSING


def test_the_alias_moved_back_to_the_stable_version_removes_the_canary() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, resolution=resolved("1"))
    p = plan(c)
    assert p.status.canary is None and p.status.rejected_versions == ()
    assert ("apps/v1", "Deployment", f"{NAME}-canary") in p.delete


def test_a_registry_outage_mid_canary_keeps_the_canary_going() -> None:
    c, p = at_step_analysing(CANARY)
    c = then(c, p, resolution=UNREACHABLE)
    p = plan(c)
    cs = p.status.canary
    assert cs is not None and cs.version == "2" and cs.state == r.CANARY_ANALYSING
    assert version_of(objects(p)[("Deployment", f"{NAME}-canary")]) == "2"
    assert p.delete == ()


def test_a_rollback_of_the_stable_version_removes_the_canary() -> None:
    c, p = serving_v1(CANARY)
    c = then(c, p, resolution=resolved("2"), deployment=deployment("2", spec=CANARY))
    # Version 2 serves (rolled out before the strategy changed, say); the alias moves to 3.
    p = plan(c)
    c = then(c, p, resolution=resolved("3"))
    p = plan(c)
    assert p.status.canary is not None and p.status.canary.version == "3"
    fired = alert("2", at=(c.now + timedelta(seconds=1)).timestamp())
    c = then(c, p, now=c.now + timedelta(seconds=2), alerts=(fired,))
    p = plan(c)
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("2", "1")
    assert p.status.canary is None
    assert version_of(objects(p)[("Deployment", NAME)]) == "1"


def route(canary_weight: int) -> progressive.RouteState:
    """The user's route `web` as read, with `canary_weight` on the canary Service."""
    obj = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": NAME, "port": 8080, "weight": 100 - canary_weight},
                        {"name": f"{NAME}-canary", "port": 8080, "weight": canary_weight},
                    ]
                }
            ]
        }
    }
    return progressive.RouteState.from_object("web", obj, NAME, f"{NAME}-canary")


def test_a_route_gets_exact_weights_once_the_canary_is_ready() -> None:
    c, p = serving_v1(ROUTED)
    c = then(c, p, resolution=resolved("2"), route=route(0))
    p = plan(c)
    objs = objects(p)
    assert objs[("Service", NAME)]["spec"]["selector"][names.LABEL_TRACK] == names.TRACK_STABLE
    assert objs[("Service", f"{NAME}-canary")]["spec"]["selector"][names.LABEL_TRACK] == (
        names.TRACK_CANARY
    )
    assert p.route_patch is None  # no weight for pods that are not ready
    c = then(c, p, canary_deployment=canary_dep(ROUTED, "2", 1), now=c.now)
    p = plan(c)
    assert p.route_patch is not None
    name, ops = p.route_patch
    assert name == "web"
    assert {
        "op": "test",
        "path": "/spec/rules/0/backendRefs/1/name",
        "value": f"{NAME}-canary",
    } in ops
    assert {"op": "add", "path": "/spec/rules/0/backendRefs/1/weight", "value": 10} in ops
    assert {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 90} in ops
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_SCALING
    c = then(c, p, route=route(10), now=c.now)
    p = plan(c)
    cs = p.status.canary
    assert cs is not None and (cs.state, cs.effective_weight) == (r.CANARY_ANALYSING, 10)
    assert p.route_patch is None


def test_a_rolled_back_canary_gives_the_route_back_to_the_stable_service() -> None:
    """With the rollback, and at every reconcile while the selector still names the rejected
    version: the canary's Service is deleted with the canary, and a weight left on it is a
    share of requests a Gateway answers with errors."""
    c, p = serving_v1(ROUTED)
    c = then(c, p, resolution=resolved("2"), route=route(0))
    c = then(c, plan(c), canary_deployment=canary_dep(ROUTED, "2", 1), now=c.now)
    c = then(c, plan(c), route=route(10), now=c.now)
    p = plan(c)
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_ANALYSING
    back = {
        ("add", "/spec/rules/0/backendRefs/0/weight", 100),
        ("add", "/spec/rules/0/backendRefs/1/weight", 0),
    }

    c = then(c, p, now=c.now + timedelta(seconds=6))
    p = plan(replace(c, analysis=record(0, verdicts.FAILED, c, "error rate 0.5 > 0.05")))
    assert p.rollback is not None and p.status.canary is None
    assert ("v1", "Service", f"{NAME}-canary") in p.delete
    assert p.route_patch is not None and p.route_patch[0] == "web"
    assert {(o["op"], o["path"], o["value"]) for o in p.route_patch[1]} >= back
    # The patch did not land (or the route's owner wrote the old weights back): the rejection
    # holds, the canary is gone, and the weights are set again.
    c = then(c, p, canary_deployment=None, now=c.now + timedelta(seconds=3))
    p = plan(c)
    assert p.rollback is None and p.status.rejected_versions == ("2",)
    assert p.route_patch is not None
    assert {(o["op"], o["path"], o["value"]) for o in p.route_patch[1]} >= back
    c = then(c, p, route=route(0), now=c.now + timedelta(seconds=3))
    assert plan(c).route_patch is None


def test_a_missing_route_holds_the_canary_and_says_so() -> None:
    c, p = serving_v1(ROUTED)
    missing = progressive.RouteState.from_object("web", None, NAME, f"{NAME}-canary")
    c = then(c, p, resolution=resolved("2"), route=missing)
    c = then(c, plan(c), canary_deployment=canary_dep(ROUTED, "2", 1), now=c.now)
    p = plan(c)
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_SCALING
    assert cond(p, r.COND_ANALYSIS) == ("False", r.TRAFFIC_ROUTE_INVALID)


def test_blue_green_previews_at_full_size_and_switches_the_service_only_after_passing() -> None:
    c, p = moved_to_v2(BLUE_GREEN)
    objs = objects(p)
    preview = objs[("Deployment", f"{NAME}-preview")]
    assert preview["spec"]["replicas"] == 2 and version_of(preview) == "2"
    assert objs[("Service", NAME)]["spec"]["selector"][names.LABEL_TRACK] == names.TRACK_STABLE
    assert ("Service", f"{NAME}-preview") in objs
    c, p = promote(BLUE_GREEN)
    assert objects(p)[("Service", NAME)]["spec"]["selector"][names.LABEL_TRACK] == (
        names.TRACK_CANARY
    )
    assert p.status.canary is not None and p.status.canary.effective_weight == 100
    c = then(c, p, deployment=deployment("2", spec=BLUE_GREEN))
    p = plan(c)
    assert objects(p)[("Service", NAME)]["spec"]["selector"][names.LABEL_TRACK] == (
        names.TRACK_STABLE
    )
    assert ("apps/v1", "Deployment", f"{NAME}-preview") in p.delete
    assert p.status.phase == r.HEALTHY and p.status.serving_version == "2"


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it() -> None:
    spec = strategy_spec({}, autoscaling={"minReplicas": 2, "maxReplicas": 6})
    p = plan(ctx(resolved("1"), spec=spec))
    objs = objects(p)
    assert "replicas" not in objs[("Deployment", NAME)]["spec"]
    hpa = objs[("HorizontalPodAutoscaler", NAME)]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"]["name"] == NAME
    # The autoscaler chose 4: the rollout is complete at 4, whatever spec.serving.replicas says.
    obj = deployment_object("1", spec=spec)
    obj["spec"]["replicas"] = 4
    obj["metadata"]["annotations"] = {render.ANN_AUTOSCALED: "true"}  # as the operator applies it
    obj["status"] |= {"replicas": 4, "updatedReplicas": 4, "readyReplicas": 4}
    obj["status"]["availableReplicas"] = 4
    c = then(ctx(resolved("1"), spec=spec), p, deployment=DeploymentState.from_object(obj))
    p = plan(c)
    assert p.status.phase == r.HEALTHY
    # Autoscaling turned off: the HPA goes, replicas come back.
    plain = strategy_spec({})
    p = plan(replace(c, spec=plain))
    assert ("autoscaling/v2", "HorizontalPodAutoscaler", NAME) in p.delete
    assert objects(p)[("Deployment", NAME)]["spec"]["replicas"] == 2


def test_the_judge_fails_only_what_is_above_its_limit_and_worse_than_stable() -> None:
    limits = CANARY.limits()
    now = ctx(resolved("1")).now

    def judged(canary: VersionSample, stable: VersionSample) -> AnalysisRecord:
        return verdicts.judge(Measurement(30, canary, stable), limits, 0, now)

    good = VersionSample(requests=100, errors=1, latency_p99=0.05)
    assert judged(good, good).verdict == verdicts.PASSED
    bad = VersionSample(requests=100, errors=40, latency_p99=0.05)
    assert judged(bad, good).verdict == verdicts.FAILED
    assert "error rate 0.4" in judged(bad, good).message
    worse_stable = VersionSample(requests=100, errors=60)
    assert judged(bad, worse_stable).verdict == verdicts.PASSED  # better than what serves
    assert judged(VersionSample(requests=5, errors=5), good).verdict == verdicts.INCONCLUSIVE
    slow = VersionSample(requests=100, latency_p99=2.0)
    assert judged(slow, good).verdict == verdicts.FAILED
    balanced = {"a": 50.0, "b": 50.0}
    one_class = VersionSample(requests=100, class_counts={"a": 100.0})
    mixed = VersionSample(requests=100, class_counts=balanced)
    assert judged(one_class, mixed).verdict == verdicts.FAILED
    assert judged(mixed, mixed).verdict == verdicts.PASSED
    unsure = VersionSample(requests=100, confidence_sum=55, confidence_count=100)
    sure = VersionSample(requests=100, confidence_sum=90, confidence_count=100)
    assert judged(unsure, sure).verdict == verdicts.FAILED
    drifted = VersionSample(requests=100, input_psi=0.9, input_psi_feature="amount")
    assert "amount" in judged(drifted, good).message


def test_stable_pods_from_before_the_track_label_are_replaced_before_any_canary_pod() -> None:
    """A Deployment applied by an operator without progressive delivery has no track label on
    its pods: a Service selecting track=stable would be empty, and one without it would send
    stable traffic to a canary. So the Service keeps selecting every pod and no canary pod is
    made until the stable pods carry the label."""
    old = deployment_object("1", spec=BLUE_GREEN)
    del old["spec"]["template"]["metadata"]["labels"][names.LABEL_TRACK]
    c = ctx(resolved("2"), spec=BLUE_GREEN, deployment=DeploymentState.from_object(old))
    p = plan(c)
    objs = objects(p)
    assert names.LABEL_TRACK not in objs[("Service", NAME)]["spec"]["selector"]
    assert ("Deployment", f"{NAME}-preview") not in objs
    assert p.status.canary is not None and p.status.canary.state == r.CANARY_SCALING
    # The stable pods relabelled (the same version rolled with the label): the preview starts.
    c = then(c, p, deployment=deployment("1", spec=BLUE_GREEN), now=c.now)
    p = plan(c)
    objs = objects(p)
    assert objs[("Service", NAME)]["spec"]["selector"][names.LABEL_TRACK] == names.TRACK_STABLE
    assert ("Deployment", f"{NAME}-preview") in objs
