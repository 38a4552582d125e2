"""The pure planner: Context → Plan. Where the rollout rules live.

Contexts are built the way the reconciler builds them: the status goes through its dict form
(as it does through the API server) and the observed Deployment is a realistic object, rendered
by the same builder and given the status the Kubernetes deployment controller would report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import ModelDeploymentSpec, parse_spec
from modeldeploy.api.status import HistoryEntry, Status, iso, iso_ms
from modeldeploy.registry.types import (
    ModelNotFound,
    RegistryError,
    RegistryUnreachable,
    ResolvedVersion,
)
from modeldeploy.render import objects as render
from modeldeploy.rollout.planner import (
    MONITORING_KINDS,
    PROGRESSING_RECHECK_SECONDS,
    Context,
    DeploymentState,
    Plan,
    plan,
)

NAME, NAMESPACE, UID = "fraud", "ml-prod", "2f7c1d9e-0000-4000-8000-000000000001"
MODEL = "fraud-detector"
IMAGE = "ghcr.io/modeldeploy/modeldeploy-serving:0.1.0"
TRACKING_URI = "http://mlflow.mlflow.svc:5000"
T0 = datetime(2025, 5, 1, 9, 0, 0, tzinfo=UTC)
BOTH_CRDS = frozenset(MONITORING_KINDS)
NO_CRDS: frozenset[str] = frozenset()
SPEC = parse_spec({"model": {"name": MODEL, "alias": "champion"}, "serving": {"replicas": 2}})
UNREACHABLE = RegistryUnreachable("ConnectionError: connection refused")
NOT_FOUND = ModelNotFound(f"registered model {MODEL!r} has no version for @champion")


def resolved(version: str) -> ResolvedVersion:
    return ResolvedVersion(MODEL, version, run_id=f"run-{version}", source=f"runs:/run-{version}/m")


def ctx(
    resolution: ResolvedVersion | RegistryError,
    *,
    status: Status | None = None,
    deployment: DeploymentState | None = None,
    spec: ModelDeploymentSpec = SPEC,
    crds: frozenset[str] = BOTH_CRDS,
    now: datetime = T0,
    generation: int = 1,
) -> Context:
    return Context(
        name=NAME,
        namespace=NAMESPACE,
        uid=UID,
        generation=generation,
        spec=spec,
        status=status or Status(),
        resolution=resolution,
        deployment=deployment,
        monitoring_crds=crds,
        image=IMAGE,
        tracking_uri=TRACKING_URI,
        now=now,
    )


def through_api(status: Status) -> Status:
    """The status as the next reconcile reads it back from the API server."""
    return Status.from_dict(yaml.safe_load(yaml.safe_dump(status.to_dict())))


def then(previous: Context, p: Plan, **changes: Any) -> Context:
    """The next reconcile: the planned status stored and read back, `now` a minute later."""
    changes.setdefault("now", previous.now + timedelta(minutes=1))
    return replace(previous, status=through_api(p.status), **changes)


def deployment_object(
    version: str,
    state: str = "complete",
    *,
    spec: ModelDeploymentSpec = SPEC,
    generation: int = 2,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """A Deployment as the API server returns it: our rendered object plus metadata the server
    adds and the status the deployment controller reports in `state`."""
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
        )
    )
    obj["metadata"] |= {
        "generation": generation,
        "uid": "9d1e0c4b-1111-4000-8000-00000000dead",
        "resourceVersion": "48213",
        "creationTimestamp": "2025-05-01T08:00:00Z",
    }
    n = spec.serving.replicas
    observed = generation if observed_generation is None else observed_generation
    available = {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
    }
    progressing = {
        "complete": (
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{NAME}-5d9c" has successfully progressed.',
        ),
        "rolling": ("True", "ReplicaSetUpdated", f'ReplicaSet "{NAME}-7f4b" is progressing.'),
        "stalled": (
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{NAME}-7f4b" has timed out progressing.',
        ),
    }[state]
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [
            available,
            {
                "type": "Progressing",
                "status": progressing[0],
                "reason": progressing[1],
                "message": progressing[2],
            },
        ],
    }
    if state == "complete":
        counts = {"replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}
    else:  # one new pod surged and not yet available; the old ones still serve
        counts = {
            "replicas": n + 1,
            "updatedReplicas": 1,
            "readyReplicas": n,
            "availableReplicas": n,
            "unavailableReplicas": 1,
        }
    # The API server omits zero counts.
    status |= {k: v for k, v in counts.items() if v}
    obj["status"] = status
    return obj


def deployment(version: str, state: str = "complete", **kw: Any) -> DeploymentState:
    return DeploymentState.from_object(deployment_object(version, state, **kw))


def cond(p: Plan, type_: str) -> tuple[str, str]:
    c = p.status.condition(type_)
    assert c is not None, f"no {type_} condition"
    return c.status, c.reason


def event_reasons(p: Plan) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in p.events]


def kinds(p: Plan) -> list[str]:
    return [o["kind"] for o in p.apply]


def history(p: Plan) -> list[tuple[str, str]]:
    return [(h.version, h.outcome) for h in p.status.history]


def deployed_version(p: Plan) -> str:
    (dep,) = [o for o in p.apply if o["kind"] == "Deployment"]
    return str(dep["spec"]["template"]["metadata"]["labels"]["modeldeploy.io/model-version"])


# --- stories built step by step ------------------------------------------------------------


def first_sight(version: str = "3", **kw: Any) -> tuple[Context, Plan]:
    c = ctx(resolved(version), **kw)
    return c, plan(c)


def healthy_on(version: str = "3", **kw: Any) -> tuple[Context, Plan]:
    c, p = first_sight(version, **kw)
    c = then(c, p, deployment=deployment(version, spec=c.spec))
    return c, plan(c)


# --- DeploymentState -----------------------------------------------------------------------


def test_deployment_state_reads_version_template_annotations_and_counts() -> None:
    s = deployment("3", "rolling", generation=5, observed_generation=4)
    assert (s.version, s.model_uri, s.run_id) == ("3", f"models:/{MODEL}/3", "run-3")
    assert (s.replicas, s.updated, s.ready, s.available, s.total) == (2, 1, 2, 2, 3)
    assert (s.generation, s.observed_generation, s.deadline_exceeded) == (5, 4, False)
    assert deployment("3", "stalled").deadline_exceeded is True


def test_deployment_complete_needs_current_generation_and_every_replica_updated() -> None:
    assert deployment("3").complete(2)
    assert not deployment("3").complete(3)  # the spec asks for more than the Deployment has
    assert not deployment("3", "rolling").complete(2)
    assert not deployment("3", generation=3, observed_generation=2).complete(2)


# --- the rollout story ---------------------------------------------------------------------


def test_first_sight_of_a_resolved_version_starts_a_rollout() -> None:
    _, p = first_sight("3")
    assert p.status.phase == r.PROGRESSING
    assert history(p) == [("3", r.OUTCOME_PROGRESSING)]
    assert p.status.history[0].started_at == iso_ms(T0)
    assert p.rollouts_started == ("3",)
    assert p.rollouts_completed == ()
    assert ("Normal", r.EV_ROLLOUT_STARTED) in event_reasons(p)
    assert (p.status.resolved_version, p.status.serving_version) == ("3", None)
    assert (p.status.model_uri, p.status.run_id) == (f"models:/{MODEL}/3", "run-3")
    assert p.status.selector == "@champion"
    assert p.status.observed_generation == 1
    assert cond(p, r.READY) == ("False", r.ROLLOUT_IN_PROGRESS)
    assert cond(p, r.COND_PROGRESSING) == ("True", r.ROLLOUT_IN_PROGRESS)
    assert cond(p, r.REGISTRY_REACHABLE) == ("True", r.REGISTRY_OK)
    assert kinds(p) == ["Deployment", "Service", "ServiceMonitor", "PrometheusRule"]
    assert deployed_version(p) == "3"
    assert p.requeue_after == PROGRESSING_RECHECK_SECONDS


def test_rollout_in_progress_stays_progressing_without_new_history() -> None:
    c, p = first_sight("3")
    p2 = plan(then(c, p, deployment=deployment("3", "rolling")))
    assert p2.status.phase == r.PROGRESSING
    assert history(p2) == [("3", r.OUTCOME_PROGRESSING)]
    assert p2.rollouts_started == () and p2.events == ()
    assert "1/2 updated" in p2.status.condition(r.READY).message  # type: ignore[union-attr]


def test_deployment_complete_for_the_target_makes_it_healthy_and_serving() -> None:
    _, p = healthy_on("3")
    assert p.status.phase == r.HEALTHY
    assert p.status.serving_version == "3"
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]
    assert p.status.history[0].finished_at == iso_ms(T0 + timedelta(minutes=1))
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    assert cond(p, r.COND_PROGRESSING) == ("False", r.ROLLOUT_COMPLETE)
    assert cond(p, r.COND_DEGRADED) == ("False", r.AS_EXPECTED)
    assert p.rollouts_completed == (("3", r.OUTCOME_SUCCEEDED),)
    assert ("Normal", r.EV_ROLLOUT_SUCCEEDED) in event_reasons(p)
    assert p.requeue_after is None


def test_a_rollout_posts_two_events_and_no_phase_change_beside_them() -> None:
    """RolloutStarted says the phase is Progressing and RolloutSucceeded that it is Healthy: a
    PhaseChanged beside either would repeat it (four Events per rollout were a third of the
    operator's requests at 1000 ModelDeployments, issue 14)."""
    c, p = first_sight("3")
    assert event_reasons(p) == [("Normal", r.EV_ROLLOUT_STARTED)]
    p = plan(then(c, p, deployment=deployment("3")))
    assert p.status.phase == r.HEALTHY
    assert event_reasons(p) == [("Normal", r.EV_ROLLOUT_SUCCEEDED)]
    # A phase no rollout Event names still has its own: Progressing → Degraded on a stall.
    c, p = first_sight("3")
    stalled = plan(then(c, p, deployment=deployment("3", "stalled")))
    assert event_reasons(stalled) == [
        ("Warning", r.EV_ROLLOUT_FAILED),
        ("Warning", r.EV_PHASE_CHANGED),
    ]


def test_completion_is_not_believed_before_the_deployment_controller_saw_the_new_spec() -> None:
    c, p = first_sight("3")
    stale = deployment("3", generation=2, observed_generation=1)
    p2 = plan(then(c, p, deployment=stale))
    assert p2.status.phase == r.PROGRESSING
    assert p2.status.serving_version is None


def test_alias_move_while_healthy_starts_new_rollout_and_keeps_serving_old_version() -> None:
    c, p = healthy_on("3")
    c = then(c, p, resolution=resolved("4"))  # the Deployment still runs v3
    p = plan(c)
    assert p.status.phase == r.PROGRESSING
    assert (p.status.serving_version, p.status.resolved_version) == ("3", "4")
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED), ("4", r.OUTCOME_PROGRESSING)]
    assert p.rollouts_started == ("4",)
    assert deployed_version(p) == "4"
    (started,) = [e for e in p.events if e.reason == r.EV_ROLLOUT_STARTED]
    assert "version 4" in started.message and "(was 3)" in started.message

    # The new pods come up: still serving 3 until every replica runs 4.
    c = then(c, p, deployment=deployment("4", "rolling", generation=3))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.PROGRESSING, "3")

    c = then(c, p, deployment=deployment("4", generation=3))
    p = plan(c)
    assert (p.status.phase, p.status.serving_version) == (r.HEALTHY, "4")
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED), ("4", r.OUTCOME_SUCCEEDED)]


def test_alias_move_starts_new_rollout_and_supersedes_unfinished_one() -> None:
    c, p = healthy_on("3")
    c = then(c, p, resolution=resolved("4"))
    p = plan(c)
    c = then(c, p, resolution=resolved("5"), deployment=deployment("4", "rolling", generation=3))
    p = plan(c)
    assert history(p) == [
        ("3", r.OUTCOME_SUCCEEDED),
        ("4", r.OUTCOME_SUPERSEDED),
        ("5", r.OUTCOME_PROGRESSING),
    ]
    superseded = p.status.history[1]
    assert superseded.finished_at == iso_ms(c.now)
    assert superseded.reason is not None and "5" in superseded.reason
    assert p.rollouts_started == ("5",)
    assert p.rollouts_completed == (("4", r.OUTCOME_SUPERSEDED),)
    assert deployed_version(p) == "5"
    assert (p.status.serving_version, p.status.phase) == ("3", r.PROGRESSING)


def test_spec_change_that_keeps_the_version_starts_no_rollout() -> None:
    c, p = healthy_on("3")
    scaled = parse_spec({"model": {"name": MODEL, "alias": "champion"}, "serving": {"replicas": 4}})
    p = plan(then(c, p, spec=scaled, generation=2))
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]
    assert p.rollouts_started == ()
    assert r.EV_ROLLOUT_STARTED not in [e.reason for e in p.events]
    assert p.status.serving_version == "3"
    assert p.status.observed_generation == 2


def test_replicas_zero_is_healthy_and_says_scaled_to_zero() -> None:
    zero = parse_spec({"model": {"name": MODEL, "alias": "champion"}, "serving": {"replicas": 0}})
    _, p = healthy_on("3", spec=zero)
    assert p.status.phase == r.HEALTHY
    assert cond(p, r.READY) == ("True", r.SCALED_TO_ZERO)
    assert p.status.serving_version == "3"


# --- the registry cannot answer ------------------------------------------------------------


def test_registry_unreachable_while_serving_keeps_rendering_the_running_version() -> None:
    c, healthy = healthy_on("3")
    c = then(c, healthy, resolution=UNREACHABLE)
    p = plan(c)
    (dep,) = [o for o in p.apply if o["kind"] == "Deployment"]
    (before,) = [o for o in healthy.apply if o["kind"] == "Deployment"]
    assert dep == before  # the same object, rendered from the pod template's annotations
    assert p.status.phase == r.HEALTHY
    assert (p.status.serving_version, p.status.resolved_version) == ("3", "3")
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    assert event_reasons(p) == [("Warning", r.EV_REGISTRY_UNREACHABLE)]
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]


def test_registry_unreachable_warning_only_on_the_transition_and_recovery_is_announced() -> None:
    c, p = healthy_on("3")
    c = then(c, p, resolution=UNREACHABLE)
    p = plan(c)
    assert event_reasons(p) == [("Warning", r.EV_REGISTRY_UNREACHABLE)]
    c = then(c, p)
    p = plan(c)
    assert p.events == ()
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)
    c = then(c, p, resolution=resolved("3"))
    p = plan(c)
    assert event_reasons(p) == [("Normal", r.EV_REGISTRY_RECOVERED)]
    assert cond(p, r.REGISTRY_REACHABLE) == ("True", r.REGISTRY_OK)


def test_registry_unreachable_with_nothing_serving_waits_in_resolving_and_applies_nothing() -> None:
    p = plan(ctx(UNREACHABLE))
    assert p.status.phase == r.RESOLVING
    assert (p.apply, p.prune) == ((), ())
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)
    assert cond(p, r.READY) == ("False", r.REGISTRY_UNREACHABLE)
    assert ("Warning", r.EV_REGISTRY_UNREACHABLE) in event_reasons(p)
    assert p.status.history == ()
    assert p.rollouts_started == ()


def test_model_not_found_with_nothing_serving_fails_and_applies_nothing() -> None:
    p = plan(ctx(NOT_FOUND))
    assert p.status.phase == r.FAILED
    assert (p.apply, p.prune) == ((), ())
    ready = p.status.condition(r.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", r.MODEL_NOT_FOUND)
    assert MODEL in ready.message and "@champion" in ready.message
    assert cond(p, r.COND_DEGRADED) == ("True", r.MODEL_NOT_FOUND)
    assert cond(p, r.REGISTRY_REACHABLE) == ("True", r.REGISTRY_OK)  # it answered: "no such"
    assert ("Warning", r.EV_MODEL_NOT_FOUND) in event_reasons(p)
    assert ("Warning", r.EV_PHASE_CHANGED) in event_reasons(p)


def test_model_not_found_while_serving_degrades_and_keeps_the_serving_version() -> None:
    c, p = healthy_on("3")
    p = plan(then(c, p, resolution=NOT_FOUND))
    assert p.status.phase == r.DEGRADED
    assert p.status.serving_version == "3"
    assert deployed_version(p) == "3"
    assert p.status.resolved_version is None  # the selector points at nothing now
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    degraded = p.status.condition(r.COND_DEGRADED)
    assert degraded is not None and (degraded.status, degraded.reason) == (
        "True",
        r.MODEL_NOT_FOUND,
    )
    assert "keeping version 3" in degraded.message
    assert ("Warning", r.EV_MODEL_NOT_FOUND) in event_reasons(p)
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]


# --- the rollout fails ---------------------------------------------------------------------


def test_progress_deadline_exceeded_degrades_and_fails_the_rollout() -> None:
    c, p = first_sight("3")
    c = then(c, p, deployment=deployment("3", "stalled"))
    p = plan(c)
    assert p.status.phase == r.DEGRADED
    assert history(p) == [("3", r.OUTCOME_FAILED)]
    assert p.status.history[0].reason == r.PROGRESS_DEADLINE_EXCEEDED
    assert p.status.history[0].finished_at == iso_ms(c.now)
    assert p.rollouts_completed == (("3", r.OUTCOME_FAILED),)
    assert ("Warning", r.EV_ROLLOUT_FAILED) in event_reasons(p)
    assert cond(p, r.READY) == ("False", r.PROGRESS_DEADLINE_EXCEEDED)
    assert cond(p, r.COND_DEGRADED) == ("True", r.PROGRESS_DEADLINE_EXCEEDED)
    assert p.status.serving_version is None


def test_stalled_rollout_that_completes_later_is_recorded_as_succeeded() -> None:
    c, p = first_sight("3")
    c = then(c, p, deployment=deployment("3", "stalled"))
    p = plan(c)
    c = then(c, p, deployment=deployment("3", generation=2))
    p = plan(c)
    assert p.status.phase == r.HEALTHY
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]
    assert p.status.history[0].reason is None


def test_deadline_condition_left_over_from_the_previous_generation_does_not_fail_new_rollout() -> (
    None
):
    c, p = first_sight("3")
    c = then(c, p, deployment=deployment("3", "stalled", generation=2))
    p = plan(c)  # v3 failed its deadline
    c = then(c, p, resolution=resolved("4"))
    p = plan(c)  # v4 applied: generation 3
    assert history(p)[-1] == ("4", r.OUTCOME_PROGRESSING)
    # The next watch event shows the new template before the controller has observed it:
    # status (and its ProgressDeadlineExceeded condition) still describes generation 2.
    not_yet_observed = deployment("4", "stalled", generation=3, observed_generation=2)
    p = plan(then(c, p, deployment=not_yet_observed))
    assert history(p)[-1] == ("4", r.OUTCOME_PROGRESSING)
    assert r.EV_ROLLOUT_FAILED not in [e.reason for e in p.events]
    assert p.status.phase == r.PROGRESSING


# --- monitoring objects --------------------------------------------------------------------


def test_monitoring_crds_missing_applies_only_deployment_and_service_and_says_why() -> None:
    c, p = first_sight("3", crds=NO_CRDS)
    assert kinds(p) == ["Deployment", "Service"]
    assert p.prune == ()
    mon = p.status.condition(r.MONITORING_READY)
    assert mon is not None and (mon.status, mon.reason) == ("False", r.MONITORING_CRDS_MISSING)
    assert "ServiceMonitor" in mon.message and "PrometheusRule" in mon.message
    assert ("Warning", r.EV_MONITORING_SKIPPED) in event_reasons(p)
    p = plan(then(c, p))
    assert r.EV_MONITORING_SKIPPED not in [e.reason for e in p.events]  # said once


def test_only_the_missing_monitoring_kind_is_skipped() -> None:
    _, p = first_sight("3", crds=frozenset({"ServiceMonitor"}))
    assert kinds(p) == ["Deployment", "Service", "ServiceMonitor"]
    mon = p.status.condition(r.MONITORING_READY)
    assert mon is not None and mon.reason == r.MONITORING_CRDS_MISSING
    assert "PrometheusRule" in mon.message and "ServiceMonitor" not in mon.message


def test_monitoring_crds_present_applies_service_monitor_and_prometheus_rule() -> None:
    _, p = first_sight("3")
    assert kinds(p) == ["Deployment", "Service", "ServiceMonitor", "PrometheusRule"]
    assert p.prune == ()
    assert cond(p, r.MONITORING_READY) == ("True", r.MONITORING_APPLIED)


def test_crds_installed_later_turn_monitoring_ready() -> None:
    c, p = first_sight("3", crds=NO_CRDS)
    p = plan(then(c, p, monitoring_crds=BOTH_CRDS))
    assert kinds(p) == ["Deployment", "Service", "ServiceMonitor", "PrometheusRule"]
    assert cond(p, r.MONITORING_READY) == ("True", r.MONITORING_APPLIED)


def test_monitoring_disabled_in_spec_prunes_both_objects_when_crds_exist() -> None:
    off = parse_spec(
        {
            "model": {"name": MODEL, "alias": "champion"},
            "monitoring": {"serviceMonitor": {"enabled": False}, "alerts": {"enabled": False}},
        }
    )
    _, p = first_sight("3", spec=off)
    assert kinds(p) == ["Deployment", "Service"]
    assert set(p.prune) == {("ServiceMonitor", NAME), ("PrometheusRule", NAME)}
    assert cond(p, r.MONITORING_READY) == ("False", r.MONITORING_DISABLED)
    _, p = first_sight("3", spec=off, crds=NO_CRDS)
    assert p.prune == ()  # nothing to delete where the kinds do not exist


def test_alerts_disabled_prunes_only_the_prometheus_rule() -> None:
    spec = parse_spec({"model": {"name": MODEL}, "monitoring": {"alerts": {"enabled": False}}})
    _, p = first_sight("3", spec=spec)
    assert kinds(p) == ["Deployment", "Service", "ServiceMonitor"]
    assert p.prune == (("PrometheusRule", NAME),)


# --- history -------------------------------------------------------------------------------


def test_history_is_bounded_by_history_limit_dropping_the_oldest() -> None:
    past = tuple(
        HistoryEntry(str(v), iso(T0), r.OUTCOME_SUCCEEDED, iso(T0))
        for v in range(1, r.HISTORY_LIMIT + 1)
    )
    newest = str(r.HISTORY_LIMIT)
    status = Status(phase=r.HEALTHY, serving_version=newest, history=past)
    c = ctx(resolved(str(r.HISTORY_LIMIT + 1)), status=status, deployment=deployment(newest))
    p = plan(c)
    assert len(p.status.history) == r.HISTORY_LIMIT
    assert p.status.history[0].version == "2"
    assert history(p)[-1] == (str(r.HISTORY_LIMIT + 1), r.OUTCOME_PROGRESSING)


def test_history_limit_fits_the_crd_max_items() -> None:
    crd = yaml.safe_load(
        (
            Path(__file__).resolve().parents[3] / "crds/modeldeploy.io_modeldeployments.yaml"
        ).read_text()
    )
    hist = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
        "properties"
    ]["history"]
    assert hist["maxItems"] >= r.HISTORY_LIMIT


# --- idempotence: what prevents duplicate history after an operator restart ----------------


def _scenario_first_sight() -> Context:
    return ctx(resolved("3"))


def _scenario_rolling() -> Context:
    c, p = first_sight("3")
    return then(c, p, deployment=deployment("3", "rolling"))


def _scenario_completes() -> Context:
    c, p = first_sight("3")
    return then(c, p, deployment=deployment("3"))


def _scenario_alias_moves() -> Context:
    c, p = healthy_on("3")
    return then(c, p, resolution=resolved("4"))


def _scenario_supersede() -> Context:
    c, p = healthy_on("3")
    c = then(c, p, resolution=resolved("4"))
    return then(c, plan(c), resolution=resolved("5"), deployment=deployment("4", "rolling"))


def _scenario_unreachable_serving() -> Context:
    c, p = healthy_on("3")
    return then(c, p, resolution=UNREACHABLE)


def _scenario_not_found_serving() -> Context:
    c, p = healthy_on("3")
    return then(c, p, resolution=NOT_FOUND)


def _scenario_stalled() -> Context:
    c, p = first_sight("3")
    return then(c, p, deployment=deployment("3", "stalled"))


def _scenario_scaled_to_zero() -> Context:
    zero = parse_spec({"model": {"name": MODEL, "alias": "champion"}, "serving": {"replicas": 0}})
    c, p = first_sight("3", spec=zero)
    return then(c, p, deployment=deployment("3", spec=zero))


SCENARIOS: dict[str, Callable[[], Context]] = {
    "first_sight": _scenario_first_sight,
    "rolling": _scenario_rolling,
    "completes": _scenario_completes,
    "alias_moves": _scenario_alias_moves,
    "supersede": _scenario_supersede,
    "unreachable_serving": _scenario_unreachable_serving,
    "unreachable_nothing_serving": lambda: ctx(UNREACHABLE),
    "not_found_serving": _scenario_not_found_serving,
    "not_found_nothing_serving": lambda: ctx(NOT_FOUND),
    "stalled": _scenario_stalled,
    "crds_missing": lambda: ctx(resolved("3"), crds=NO_CRDS),
    "scaled_to_zero": _scenario_scaled_to_zero,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_replanning_from_the_planned_status_with_the_same_inputs_changes_nothing(
    scenario: str,
) -> None:
    """After a restart the operator plans again from the stored status: it must not repeat a
    history entry, an event or a metric increment, and the status must compare equal so that
    nothing is written."""
    c = SCENARIOS[scenario]()
    first = plan(c)
    changed = first.status.to_dict() != c.status.to_dict()
    assert first.events or changed, "the scenario should do something the first time"
    again = plan(then(c, first, now=c.now + timedelta(hours=3)))
    assert again.status.to_dict() == first.status.to_dict()
    assert again.events == ()
    assert (again.rollouts_started, again.rollouts_completed) == ((), ())
    assert again.apply == first.apply
    assert again.prune == first.prune


def test_a_later_now_does_not_move_condition_transition_times_in_a_steady_state() -> None:
    c, p = healthy_on("3")
    before = {x.type: x.last_transition_time for x in p.status.conditions}
    p2 = plan(then(c, p, now=c.now + timedelta(days=1)))
    assert {x.type: x.last_transition_time for x in p2.status.conditions} == before


# --- a lost status and the registry's record of a rollback ------------------------------------


def rejected_here(version: str, by: str = f"{NAMESPACE}/{NAME}") -> ResolvedVersion:
    tags = {names.TAG_REJECTED: f"{by}: ModelHighErrorRate at 2025-05-01T08:00:00Z"}
    return replace(resolved(version), tags=tags)


def test_a_wiped_status_keeps_out_the_version_the_registry_says_was_rolled_back_here() -> None:
    c = ctx(rejected_here("4"), deployment=deployment("3"))  # no history: the status was lost
    p = plan(c)
    assert deployed_version(p) == "3"
    assert p.status.phase == r.ROLLED_BACK
    assert p.status.rejected_versions == ("4",)
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]
    assert p.rollouts_started == ()


def test_the_registry_record_counts_only_for_this_modeldeployment_and_a_lost_status() -> None:
    elsewhere = ctx(rejected_here("4", by="other/m"), deployment=deployment("3"))
    assert deployed_version(plan(elsewhere)) == "4"
    # A new ModelDeployment (no Deployment yet) of the same name starts afresh.
    new = plan(ctx(rejected_here("4")))
    assert deployed_version(new) == "4" and new.status.rejected_versions == ()
    # With a status the status decides: a selector that moved away and back cleared it there.
    c, p = healthy_on("3")
    c = then(c, p, resolution=rejected_here("4"))
    assert deployed_version(plan(c)) == "4"
