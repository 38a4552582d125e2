"""The pure planner: (what was observed) → Plan(desired objects, next status, events, metrics).

No I/O, no clock: `now` comes in with the context. The rules:

* The selector's resolved version is the target. When the registry cannot answer (unreachable,
  or the model/alias is gone) the version the pods already run stays the target, rendered from
  what the Deployment's pod template records, so nothing that serves is torn down; with nothing
  serving there is nothing to apply and the phase says why (Resolving, or Failed).
* A rollout starts when the target differs from the newest history entry; it succeeds when the
  Deployment reports every replica updated and available for the target's template; it fails
  when the Deployment's progress deadline passes. History is derived from the stored status, so
  a restarted operator neither repeats entries nor misses a completion.
* `servingVersion` is the last version fully rolled out; it moves only on success.
* With spec.model.requireApproval, the selector's version is rolled out only once the registry
  records an approval for that stage on it (governance/records.py); until then what runs keeps
  running, phase AwaitingApproval, and the Approved condition names the version and the stage.
* A version the pods do not run yet is rolled out only if it passed its pre-flight check (the
  reconciler checks what `Plan.new_version` names and plans again with `Context.unservable`):
  a failed check keeps what runs now, Degraded with the check's reason, retried soon; a registry
  that cannot be asked keeps it too, with RegistryReachable=False.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.alerts.store import FiringAlert
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import (
    AnalysisRecord,
    Condition,
    HistoryEntry,
    Status,
    iso_ms,
    set_condition,
    with_kstatus,
)
from modeldeploy.governance import records
from modeldeploy.registry.types import ModelNotFound, RegistryError, ResolvedVersion, Unservable
from modeldeploy.render import objects as render
from modeldeploy.rollout import progressive
from modeldeploy.rollout.deployment import DeploymentState
from modeldeploy.rollout.rollback import Assessment, Rollback, Target, assess

PROGRESSING_RECHECK_SECONDS = 10.0
# A version held back by its pre-flight check is checked again this soon (artifacts may appear).
PREFLIGHT_RECHECK_SECONDS = 10.0
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")


@dataclass(frozen=True)
class Context:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: ModelDeploymentSpec
    status: Status
    resolution: ResolvedVersion | RegistryError
    deployment: DeploymentState | None
    monitoring_crds: frozenset[str]
    image: str
    tracking_uri: str
    now: datetime
    serving_env: tuple[tuple[str, str], ...] = ()
    alerts: tuple[FiringAlert, ...] = ()  # firing alerts naming this ModelDeployment
    allow_version: str | None = None  # annotation modeldeploy.io/allow-version
    # Pre-flight failures (or outages) of versions this reconcile checked, by version.
    unservable: Mapping[str, Unservable] = field(default_factory=dict)
    # Progressive delivery: the canary (or preview) Deployment, the user's HTTPRoute when the
    # strategy names one, and the analysis the reconciler just made of the stored step.
    canary_deployment: DeploymentState | None = None
    route: progressive.RouteState | None = None
    analysis: AnalysisRecord | None = None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    apply: tuple[dict[str, Any], ...]
    prune: tuple[tuple[str, str], ...]  # (kind, name) of monitoring objects no longer wanted
    status: Status
    events: tuple[Event, ...] = ()
    rollouts_started: tuple[str, ...] = ()
    rollouts_completed: tuple[tuple[str, str], ...] = ()  # (version, outcome)
    requeue_after: float | None = None
    rollback: Rollback | None = None
    # The version this plan rolls out that the pods do not run yet: pre-flighted before applying.
    new_version: str | None = None
    # A decision that must survive a crash (a rollback, a rejected version): the stored status
    # with only the decision recorded, written before any child is touched, and the Events that
    # announce it (posted once that write succeeded). Conditions that report the world are not
    # in it: they wait for the apply and the final status.
    record_first: Status | None = None
    decision_events: tuple[Event, ...] = ()
    # Children no longer wanted, (apiVersion, kind, name): a finished canary, an HPA turned off.
    delete: tuple[tuple[str, str, str], ...] = ()
    # JSON patch of the weights on the HTTPRoute spec.strategy names: (route name, ops).
    route_patch: tuple[str, tuple[dict[str, Any], ...]] | None = None


_Target = Target


class _Builder:
    """Accumulates conditions and events for one plan."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conditions: tuple[Condition, ...] = ctx.status.conditions
        self.events: list[Event] = []
        self.decision_events: list[Event] = []

    def cond(self, type_: str, status: bool | str, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions, type_, status, reason, message, self.ctx.now, self.ctx.generation
        )

    def event(self, warning: bool, reason: str, message: str, decision: bool = False) -> None:
        ev = Event("Warning" if warning else "Normal", reason, message)
        (self.decision_events if decision else self.events).append(ev)

    def transition(self, type_: str) -> tuple[str | None, str | None]:
        """(old status, new status) of a condition, for transition-only events."""
        old = self.ctx.status.condition(type_)
        new = next((c for c in self.conditions if c.type == type_), None)
        return (old.status if old else None, new.status if new else None)


@dataclass(frozen=True)
class InvalidSpec:
    """The planner's input for a spec the schema let through but the operator cannot use."""

    status: Status
    message: str
    now: datetime
    generation: int


def plan(ctx: Context | InvalidSpec) -> Plan:
    """The next status, the objects to apply and the Events, from everything observed: the one
    place a status is built, for a usable spec and an unusable one alike."""
    return _with_kstatus(ctx, _plan(ctx))


def _with_kstatus(ctx: Context | InvalidSpec, p: Plan) -> Plan:
    """kstatus' Reconciling/Stalled on both status writes: the final status (from its phase),
    and a rollback decision written first, which says the rollback is under way."""
    status = with_kstatus(p.status, ctx.now, ctx.generation)
    first = p.record_first
    if first is not None:
        rolled = first.condition(r.COND_ROLLED_BACK)
        msg = rolled.message if rolled else "rolling back"
        kept = tuple(c for c in first.conditions if c.type != r.COND_STALLED)
        first = replace(
            first,
            conditions=set_condition(
                kept,
                r.COND_RECONCILING,
                True,
                r.ROLLING_BACK_REASON,
                msg,
                ctx.now,
                first.observed_generation,  # the rest of this write is of the stored status
            ),
        )
    return replace(p, status=status, record_first=first)


def _plan(ctx: Context | InvalidSpec) -> Plan:
    if isinstance(ctx, InvalidSpec):
        return _plan_invalid_spec(ctx)
    b = _Builder(ctx)
    res, dep, old = ctx.resolution, ctx.deployment, ctx.status
    target, resolved = _registry(ctx, b)
    cs = old.canary
    if cs is not None and isinstance(res, RegistryError) and not isinstance(res, ModelNotFound):
        # The registry cannot say whether the selector moved: the canary carries on.
        target = _Target(cs.version, cs.model_uri, cs.run_id)
    selected = res.version if isinstance(res, ResolvedVersion) else None
    # The allow-version annotation acts once per value.
    allow = ctx.allow_version if ctx.allow_version != old.allow_version_handled else None
    verdict = assess(
        ctx.spec,
        old,
        dep.version if dep else None,
        selected,
        ctx.alerts,
        allow,
        ctx.unservable,
        recorded=_recorded_rejection(ctx),
    )
    running = _running(ctx)
    if verdict.rollback is None and running is not None:
        failed = progressive.failure(
            old, ctx.spec, ctx.analysis, ctx.alerts, running.version, ctx.now
        )
        if failed is not None:  # the canary is rolled back like a serving version
            verdict = replace(
                verdict,
                rejected=(*verdict.rejected, failed.bad),
                rollback=failed,
                override=running,
                cleared=tuple(v for v in verdict.cleared if v != failed.bad),
            )
    if verdict.override is not None:
        target = verdict.override
    target, waiting = _gate(ctx, b, target, verdict)
    target, blocked = _hold(ctx, b, target, selected, verdict)
    history_before = _apply_rollback(ctx, b, verdict)

    if target is None:
        return _nothing_to_serve(ctx, b, resolved, blocked, waiting)

    n = stable_replicas(ctx)
    seen = progressive.Observed(
        stable_ready=dep.ready if dep else 0,
        stable_complete=dep is not None and dep.version == target.version and dep.complete(n),
        stable_tracked=dep is not None and dep.tracked and dep.all_updated(),
        canary=ctx.canary_deployment,
        route=ctx.route,
    )
    prog = (
        progressive.without_canary(target, ctx.route)
        if verdict.override is not None  # a rollback, now or held: no canary
        else progressive.advance(ctx.spec, cs, target, running, seen, ctx.analysis, n, ctx.now)
    )
    for warning, reason, message in prog.events:
        b.event(warning, reason, message)
    desired, prune = _desired_objects(ctx, b, prog, n)
    # The deadline condition counts only once the Deployment controller has seen this template:
    # right after a new version is applied, the old rollout's condition is still there.
    stalled = (
        dep is not None
        and dep.version == target.version
        and dep.deadline_exceeded
        and dep.observed_generation >= dep.generation
    )
    complete = dep is not None and dep.version == target.version and dep.complete(n)
    history, started, completed = _history(
        ctx, b, target, complete, stalled and not complete, history_before
    )
    serving_version = target.version if complete else old.serving_version
    not_found = isinstance(res, ModelNotFound)

    replicas = n
    counts = (
        f"{dep.updated}/{replicas} updated, {dep.available}/{replicas} available"
        if dep is not None
        else f"0/{replicas} updated"
    )
    held_back = bool(verdict.rejected) and (selected is None or selected in verdict.rejected)
    refused = blocked if blocked is not None and not blocked[1].outage else None
    if complete:
        unhealthy = not_found or verdict.unanswered is not None or refused is not None
        phase = (
            r.ROLLED_BACK
            if held_back
            else r.DEGRADED
            if unhealthy
            else r.AWAITING_APPROVAL
            if waiting
            else r.HEALTHY
        )
        why = r.SCALED_TO_ZERO if replicas == 0 else r.MODEL_SERVING
        b.cond(r.READY, True, why, f"version {target.version} serving on {replicas} replica(s)")
        if waiting is not None:
            b.cond(r.COND_PROGRESSING, False, r.APPROVAL_MISSING, waiting)
        else:
            b.cond(
                r.COND_PROGRESSING,
                False,
                r.ROLLOUT_COMPLETE,
                f"version {target.version} rolled out",
            )
    elif stalled:
        phase = r.DEGRADED
        msg = f"version {target.version} not available within the progress deadline ({counts})"
        b.cond(r.READY, False, r.PROGRESS_DEADLINE_EXCEEDED, msg)
        b.cond(r.COND_PROGRESSING, False, r.PROGRESS_DEADLINE_EXCEEDED, msg)
    else:
        phase = r.ROLLING_BACK if held_back else r.PROGRESSING
        if prog.canary is not None:
            c = prog.canary
            counts = (
                f"{c.step_text}, {c.weight}% asked, {c.effective_weight}% effective; "
                f"version {prog.stable.version} serves the rest"
            )
        b.cond(
            r.READY, False, r.ROLLOUT_IN_PROGRESS, f"rolling out version {target.version}: {counts}"
        )
        b.cond(
            r.COND_PROGRESSING, True, r.ROLLOUT_IN_PROGRESS, f"version {target.version}: {counts}"
        )
    if prog.analysis_condition is not None:
        b.cond(r.COND_ANALYSIS, *prog.analysis_condition)
    else:
        b.conditions = tuple(c for c in b.conditions if c.type != r.COND_ANALYSIS)
    if verdict.unanswered is not None:
        a = verdict.unanswered
        msg = f"{a.name} firing for version {a.model_version}; {_unanswered_why(ctx, verdict)}"
        b.cond(r.COND_DEGRADED, True, verdict.reason, msg)
        if b.transition(r.COND_DEGRADED)[0] != "True" or _reason_changed(ctx, b, r.COND_DEGRADED):
            b.event(True, r.EV_ALERT_FIRING, msg)
    elif held_back:
        bad = ", ".join(verdict.rejected)
        b.cond(
            r.COND_DEGRADED,
            True,
            r.ROLLED_BACK_REASON,
            f"version {bad} was rolled back; serving {target.version} until the selector moves",
        )
    elif refused is not None:
        _refused(ctx, b, refused, f"; keeping version {target.version}")
    elif not_found:
        b.cond(r.COND_DEGRADED, True, r.MODEL_NOT_FOUND, f"{res}; keeping version {target.version}")
    elif stalled and not complete:
        b.cond(
            r.COND_DEGRADED, True, r.PROGRESS_DEADLINE_EXCEEDED, f"version {target.version} stalled"
        )
    else:
        b.cond(r.COND_DEGRADED, False, r.AS_EXPECTED, "")
    _phase_event(ctx, b, phase)

    status = Status(
        phase=phase,
        selector=ctx.spec.model.selector,
        serving_version=serving_version,
        resolved_version=resolved,
        model_uri=target.uri,
        run_id=target.run_id or None,
        observed_generation=ctx.generation,
        rejected_versions=verdict.rejected,
        allow_version_handled=ctx.allow_version,
        conditions=b.conditions,
        history=tuple(history[-r.HISTORY_LIMIT :]),
        canary=prog.canary,
    )
    recheck = PROGRESSING_RECHECK_SECONDS
    if prog.canary is not None:
        recheck = min(recheck, ctx.spec.strategy.analysis.interval)
    return Plan(
        apply=desired,
        prune=prune,
        status=status,
        events=tuple(b.events),
        rollouts_started=started,
        rollouts_completed=completed,
        requeue_after=recheck
        if phase in (r.PROGRESSING, r.ROLLING_BACK)
        else PREFLIGHT_RECHECK_SECONDS
        if blocked is not None
        else None,
        rollback=verdict.rollback,
        new_version=target.version if _is_new(ctx, target) else None,
        record_first=_decision(ctx, verdict, history_before, b.conditions),
        decision_events=tuple(b.decision_events),
        delete=_unwanted(ctx, prog),
        route_patch=(ctx.route.name, prog.route_ops) if ctx.route and prog.route_ops else None,
    )


def stable_replicas(ctx: Context) -> int:
    """Replicas the stable Deployment should have: the spec's, or with an autoscaler what the
    autoscaler set (its minimum before it has said anything)."""
    auto = ctx.spec.serving.autoscaling
    if auto is None:
        return ctx.spec.serving.replicas
    dep = ctx.deployment
    if dep is None or not dep.autoscaled:
        return auto.min_replicas
    if dep.replicas == 0:  # the autoscaler leaves a Deployment scaled to zero alone
        return 0
    # The autoscaler keeps replicas within its bounds. Below them is the API server's default
    # of 1 for a Deployment created without replicas, before the autoscaler has said anything.
    return min(max(dep.replicas, auto.min_replicas), auto.max_replicas)


def _unwanted(ctx: Context, prog: progressive.Progress) -> tuple[tuple[str, str, str], ...]:
    """Canary objects once no canary runs (named as the stored canary's strategy named them),
    and the HorizontalPodAutoscaler once spec.serving.autoscaling is gone."""
    out: list[tuple[str, str, str]] = []
    old = ctx.status.canary
    if prog.canary is None and (old is not None or ctx.canary_deployment is not None):
        spec = ctx.spec
        if old is not None and old.strategy != spec.strategy.type:
            spec = replace(spec, strategy=replace(spec.strategy, type=old.strategy))
        name = render.second_name(ctx.name, spec)
        out += [("apps/v1", "Deployment", name), ("v1", "Service", name)]
    dep = ctx.deployment
    if ctx.spec.serving.autoscaling is None and dep is not None and dep.autoscaled:
        out.append(("autoscaling/v2", "HorizontalPodAutoscaler", ctx.name))
    return tuple(out)


def _decision(
    ctx: Context,
    verdict: Assessment,
    history: list[HistoryEntry],
    conditions: tuple[Condition, ...],
) -> Status | None:
    """The stored status with a rollback decision recorded and nothing else changed: the rejected
    version, the history entries of the rollback and the RolledBack condition. Written before the
    apply, so a crash between the two cannot forget the rejection and redeploy the bad version."""
    if verdict.rollback is None:
        return None
    rolled_back = next(c for c in conditions if c.type == r.COND_ROLLED_BACK)
    kept = tuple(c for c in ctx.status.conditions if c.type != r.COND_ROLLED_BACK)
    return replace(
        ctx.status,
        rejected_versions=verdict.rejected,
        allow_version_handled=ctx.allow_version,
        history=tuple(history[-r.HISTORY_LIMIT :]),
        conditions=(*kept, rolled_back),
    )


def _plan_invalid_spec(ctx: InvalidSpec) -> Plan:
    """A spec the schema let through but the operator cannot use: phase Failed and Ready=False
    naming the field; nothing is applied, and the rest of the stored status (rejections, the
    allow-version value already acted on, history) is kept as it is, so fixing the spec resumes
    exactly where things were."""
    status, message, now, generation = ctx.status, ctx.message, ctx.now, ctx.generation
    old = status.condition(r.READY)
    conditions = set_condition(
        status.conditions, r.READY, False, r.INVALID_SPEC, message, now, generation
    )
    known = old is not None and (old.reason, old.message) == (r.INVALID_SPEC, message)
    events = () if known else (Event("Warning", r.INVALID_SPEC, message),)
    new = replace(status, phase=r.FAILED, observed_generation=generation, conditions=conditions)
    return Plan(apply=(), prune=(), status=new, events=events)


def _registry(ctx: Context, b: _Builder) -> tuple[_Target | None, str | None]:
    """Target version and status.resolvedVersion, with RegistryReachable set."""
    res, model = ctx.resolution, ctx.spec.model
    if isinstance(res, ResolvedVersion):
        b.cond(
            r.REGISTRY_REACHABLE,
            True,
            r.REGISTRY_OK,
            f"{model.name} {model.selector} is version {res.version}",
        )
        if b.transition(r.REGISTRY_REACHABLE) == ("False", "True"):
            b.event(False, r.EV_REGISTRY_RECOVERED, "the model registry answers again")
        return _Target(res.version, res.uri, res.run_id), res.version
    answered = isinstance(res, ModelNotFound)
    if answered:
        b.cond(r.REGISTRY_REACHABLE, True, r.REGISTRY_OK, str(res))
        degraded = ctx.status.condition(r.COND_DEGRADED)
        if degraded is None or degraded.reason != r.MODEL_NOT_FOUND:
            b.event(True, r.EV_MODEL_NOT_FOUND, str(res))
    else:
        b.cond(r.REGISTRY_REACHABLE, False, r.REGISTRY_UNREACHABLE, str(res))
        if b.transition(r.REGISTRY_REACHABLE)[0] != "False":
            b.event(True, r.EV_REGISTRY_UNREACHABLE, f"cannot ask the model registry: {res}")
    resolved = None if answered else ctx.status.resolved_version
    return _running(ctx), resolved


def _running(ctx: Context) -> _Target | None:
    """What the pods run, from the Deployment's pod template."""
    dep = ctx.deployment
    if dep is not None and dep.version and dep.model_uri:
        return _Target(dep.version, dep.model_uri, dep.run_id or "")
    return None


def _is_new(ctx: Context, target: _Target) -> bool:
    """The pods do not run `target` yet: rolling it out needs its pre-flight check first."""
    dep = ctx.deployment
    return dep is None or (dep.version, dep.model_uri) != (target.version, target.uri)


Blocked = tuple[str, Unservable]  # (version, why it is not rolled out)


def lost_status(status: Status, deployment: DeploymentState | None) -> bool:
    """No history while a Deployment serves: the status was wiped or restored without it (a new
    ModelDeployment has no Deployment yet)."""
    return not status.history and deployment is not None


def _recorded_rejection(ctx: Context) -> str | None:
    """The selected version, when the status lost its record and the registry's rejected tag on
    that version names this ModelDeployment (the rollback writes it before the phase says
    RolledBack): a wiped status must not bring back a version rolled back here. With a status
    the status decides (a selector that moved away and back clears a rejection; the tag stays)."""
    res = ctx.resolution
    if not lost_status(ctx.status, ctx.deployment) or not isinstance(res, ResolvedVersion):
        return None
    said = res.tags.get(names.TAG_REJECTED, "")
    return res.version if said.startswith(f"{ctx.namespace}/{ctx.name}:") else None


def _hold(
    ctx: Context, b: _Builder, target: _Target | None, selected: str | None, verdict: Assessment
) -> tuple[_Target | None, Blocked | None]:
    """The target after the rules that keep what runs now: a rejected version the selector
    names is not redeployed even with nothing healthy to go back to, and a version that failed
    its pre-flight check, or could not be checked, is not rolled out."""
    outages = [(v, u) for v, u in ctx.unservable.items() if u.outage]
    if outages:  # not a verdict on any version: the registry did not answer the check
        version, failure = outages[0]
        msg = f"pre-flight check of version {version}: {failure.message}"
        b.cond(r.REGISTRY_REACHABLE, False, r.REGISTRY_UNREACHABLE, msg)
        b.events = [e for e in b.events if e.reason != r.EV_REGISTRY_RECOVERED]
        said = any(e.reason == r.EV_REGISTRY_UNREACHABLE for e in b.events)
        if b.transition(r.REGISTRY_REACHABLE)[0] != "False" and not said:
            b.event(True, r.EV_REGISTRY_UNREACHABLE, f"cannot ask the model registry: {msg}")
    if verdict.override is None and selected is not None and selected in verdict.rejected:
        return _running(ctx), None
    if target is None or not _is_new(ctx, target) or target.version not in ctx.unservable:
        return target, None
    return _running(ctx), (target.version, ctx.unservable[target.version])


def _gate(
    ctx: Context, b: _Builder, target: _Target | None, verdict: Assessment
) -> tuple[_Target | None, str | None]:
    """The approval gate of spec.model.requireApproval: (target, why it waits or None).

    The Approved condition always describes the version the selector names. Only that version,
    when the pods do not run it yet, waits for its approval; what runs keeps running. A rollback
    target is not gated: it served here before, and rolling back must not wait for a person.
    A version that already serves and lost its approval keeps serving (revoking is a record, not
    a kill switch: moving the selector is), with Approved=False saying so."""
    stage, res = ctx.spec.require_approval, ctx.resolution
    if stage is None:
        b.conditions = tuple(c for c in b.conditions if c.type != r.COND_APPROVED)
        return target, None
    if not isinstance(res, ResolvedVersion):  # the registry did not say: nothing new to judge
        return target, None
    granted = records.approval(res.tags, stage)
    if granted is not None:
        note = f" ({granted.note})" if granted.note else ""
        msg = f"version {res.version} approved for {stage} by {granted.by} at {granted.at}{note}"
        b.cond(r.COND_APPROVED, True, r.APPROVAL_GRANTED, msg)
        if b.transition(r.COND_APPROVED)[0] != "True":
            b.event(False, r.EV_APPROVED, msg)
        return target, None
    gated = (
        verdict.override is None
        and target is not None
        and target.version == res.version
        and _is_new(ctx, target)
    )
    if not gated:
        if target is not None and target.version == res.version:
            msg = (
                f"version {res.version} serves without an approval for {stage} (revoked, or "
                "serving before the requirement); it keeps serving until the selector moves"
            )
            b.cond(r.COND_APPROVED, False, r.SERVING_UNAPPROVED, msg)
        return target, None
    running = _running(ctx)
    msg = (
        f"version {res.version} waits for an approval for {stage} "
        f"(modeldeploy approve {ctx.spec.model.name} {res.version} --stage {stage})"
    )
    if running is not None:
        msg += f"; version {running.version} keeps serving"
    b.cond(r.COND_APPROVED, False, r.APPROVAL_MISSING, msg)
    old = ctx.status.condition(r.COND_APPROVED)
    if old is None or (old.status, old.message) != ("False", msg):
        b.event(False, r.EV_APPROVAL_REQUIRED, msg)
    return running, msg


def _refused(ctx: Context, b: _Builder, refused: Blocked, suffix: str) -> str:
    """Degraded with the pre-flight check's reason; a Warning Event when that is news."""
    version, failure = refused
    msg = f"version {version} cannot be rolled out: {failure.message}{suffix}"
    b.cond(r.COND_DEGRADED, True, failure.reason, msg)
    old = ctx.status.condition(r.COND_DEGRADED)
    if old is None or (old.status, old.reason, old.message) != ("True", failure.reason, msg):
        b.event(True, r.EV_PREFLIGHT_FAILED, msg)
    return msg


def _unanswered_why(ctx: Context, verdict: Assessment) -> str:
    if verdict.reason == r.ROLLBACK_DISABLED:
        return "rollback is disabled"
    if verdict.reason == r.REGISTRY_UNREACHABLE:
        return "the rollback waits for the registry to confirm its target"
    known = {h.version for h in ctx.status.history}
    skipped = [
        f"version {v}: {u.message}"
        for v, u in ctx.unservable.items()
        if v in known and not u.outage
    ]
    return "no earlier healthy version" + (f" (skipped {'; '.join(skipped)})" if skipped else "")


def _nothing_to_serve(
    ctx: Context,
    b: _Builder,
    resolved: str | None,
    blocked: Blocked | None = None,
    approval: str | None = None,
) -> Plan:
    res = ctx.resolution
    waiting = "waiting for the registry to name a version"
    if approval is not None:
        phase, reason, why = r.AWAITING_APPROVAL, r.APPROVAL_MISSING, approval
        waiting = approval
        b.cond(r.COND_DEGRADED, False, r.AS_EXPECTED, "")
    elif blocked is not None and not blocked[1].outage:
        phase, reason = r.FAILED, blocked[1].reason
        why = _refused(ctx, b, blocked, "")
        waiting = f"waiting for version {blocked[0]} to pass its pre-flight check"
    elif blocked is not None:
        phase, reason, why = r.RESOLVING, r.REGISTRY_UNREACHABLE, blocked[1].message
        b.cond(r.COND_DEGRADED, False, r.AS_EXPECTED, "")
    elif isinstance(res, ModelNotFound):
        phase, reason, why = r.FAILED, r.MODEL_NOT_FOUND, str(res)
        b.cond(r.COND_DEGRADED, True, reason, why)
    else:
        phase, reason, why = r.RESOLVING, r.REGISTRY_UNREACHABLE, str(res)
        b.cond(r.COND_DEGRADED, False, r.AS_EXPECTED, "")
    b.cond(r.READY, False, reason, f"nothing is serving: {why}")
    b.cond(r.COND_PROGRESSING, False, reason if approval else r.NOTHING_SERVING, waiting)
    _phase_event(ctx, b, phase)
    status = replace(
        ctx.status,
        phase=phase,
        selector=ctx.spec.model.selector,
        canary=None,
        resolved_version=resolved,
        observed_generation=ctx.generation,
        conditions=b.conditions,
    )
    recheck = PREFLIGHT_RECHECK_SECONDS if blocked is not None else None
    return Plan(apply=(), prune=(), status=status, events=tuple(b.events), requeue_after=recheck)


def _desired_objects(
    ctx: Context, b: _Builder, prog: progressive.Progress, n: int
) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[str, str], ...]]:
    target = prog.stable
    autoscaled = ctx.spec.serving.autoscaling is not None
    rc = render.RenderContext(
        name=ctx.name,
        namespace=ctx.namespace,
        uid=ctx.uid,
        spec=ctx.spec,
        version=target.version,
        model_uri=target.uri,
        run_id=target.run_id,
        image=ctx.image,
        tracking_uri=ctx.tracking_uri,
        serving_env=ctx.serving_env,
        autoscaled=autoscaled,
    )
    # The Service selects one track only while a canary runs or every stable pod carries the
    # track label: an older operator's pods do not until replaced, and without a canary,
    # selecting every serving pod is selecting the stable ones.
    dep = ctx.deployment
    tracked = dep is not None and dep.tracked and (dep.all_updated() or prog.canary is not None)
    objs = [render.build_deployment(rc), render.build_service(rc, prog.active if tracked else None)]
    if autoscaled:
        objs.append(render.build_hpa(rc))
    cs = prog.canary
    if cs is not None and prog.canary_replicas > 0:
        canary = replace(
            rc,
            version=cs.version,
            model_uri=cs.model_uri,
            run_id=cs.run_id,
            track=names.TRACK_CANARY,
            replicas=prog.canary_replicas,
            autoscaled=False,
        )
        objs.append(render.build_deployment(canary))
        if render.split_services(ctx.spec):
            objs.append(render.build_service(canary))
    mon = ctx.spec.monitoring
    wanted = {"ServiceMonitor": mon.service_monitor, "PrometheusRule": mon.alerts.enabled}
    builders = {
        "ServiceMonitor": render.build_service_monitor,
        "PrometheusRule": render.build_prometheus_rule,
    }
    missing = [k for k in MONITORING_KINDS if wanted[k] and k not in ctx.monitoring_crds]
    objs += [builders[k](rc) for k in MONITORING_KINDS if wanted[k] and k in ctx.monitoring_crds]
    prune = tuple(
        (k, ctx.name) for k in MONITORING_KINDS if not wanted[k] and k in ctx.monitoring_crds
    )
    if not any(wanted.values()):
        b.cond(
            r.MONITORING_READY,
            False,
            r.MONITORING_DISABLED,
            "spec.monitoring disables both objects",
        )
    elif missing:
        msg = f"{' and '.join(missing)} skipped: the monitoring.coreos.com CRDs are not installed"
        b.cond(r.MONITORING_READY, False, r.MONITORING_CRDS_MISSING, msg)
        if b.transition(r.MONITORING_READY)[0] != "False":
            b.event(True, r.EV_MONITORING_SKIPPED, msg)
    else:
        applied = [k for k in MONITORING_KINDS if wanted[k]]
        off = [f"{k} disabled" for k in MONITORING_KINDS if not wanted[k]]
        msg = f"{' and '.join(applied)} applied" + (f" ({', '.join(off)})" if off else "")
        b.cond(r.MONITORING_READY, True, r.MONITORING_APPLIED, msg)
    return tuple(objs), prune


def _apply_rollback(ctx: Context, b: _Builder, verdict: Assessment) -> list[HistoryEntry]:
    """History with a rollback recorded (the bad rollout RolledBack, the good version's rollout
    started), the RolledBack condition and Event; or the rejection cleared."""
    hist = list(ctx.status.history)
    rb = verdict.rollback
    now = iso_ms(ctx.now)
    if rb is not None:
        why = rb.why
        for i in range(len(hist) - 1, -1, -1):
            if hist[i].version == rb.bad:
                hist[i] = replace(
                    hist[i], outcome=r.OUTCOME_ROLLED_BACK, finished_at=now, reason=why
                )
                break
        good = verdict.override
        hist.append(
            HistoryEntry(
                rb.good,
                now,
                r.OUTCOME_PROGRESSING,
                reason=f"rollback: {why}",
                run_id=(good.run_id if good else "") or None,
                model=ctx.spec.model.name,
            )
        )
        msg = f"rolled back from version {rb.bad} to {rb.good}: {why}"
        if rb.alert.summary:
            msg += f" ({rb.alert.summary})"
        b.cond(r.COND_ROLLED_BACK, True, rb.alert.name, msg)
        b.event(True, r.EV_ROLLED_BACK, msg, decision=True)
    elif verdict.cleared and not verdict.rejected and ctx.status.condition(r.COND_ROLLED_BACK):
        msg = f"version {', '.join(verdict.cleared)} may be deployed again"
        b.cond(r.COND_ROLLED_BACK, False, r.REJECTION_CLEARED, msg)
        b.event(False, r.EV_REJECTION_CLEARED, msg)
    return hist


def _reason_changed(ctx: Context, b: _Builder, type_: str) -> bool:
    old = ctx.status.condition(type_)
    new = next((c for c in b.conditions if c.type == type_), None)
    return old is None or new is None or old.reason != new.reason


def _history(
    ctx: Context,
    b: _Builder,
    target: _Target,
    complete: bool,
    stalled: bool,
    history: list[HistoryEntry],
) -> tuple[list[HistoryEntry], tuple[str, ...], tuple[tuple[str, str], ...]]:
    hist = list(history)
    now = iso_ms(ctx.now)
    started: list[str] = []
    completed: list[tuple[str, str]] = []
    last = hist[-1] if hist else None
    if last is None and complete:
        # No record, yet the pods already run the target: the status was lost (wiped, restored
        # from a backup without status). Record what is there; nothing was rolled out now, so
        # no rollout Events or counts.
        hist.append(
            HistoryEntry(
                target.version,
                now,
                r.OUTCOME_SUCCEEDED,
                finished_at=now,
                reason=r.ADOPTED,
                run_id=target.run_id or None,
                model=ctx.spec.model.name,
            )
        )
        return hist, (), ()
    if last is None or last.version != target.version:
        if last is not None and last.outcome == r.OUTCOME_PROGRESSING:
            hist[-1] = replace(
                last,
                outcome=r.OUTCOME_SUPERSEDED,
                finished_at=now,
                reason=f"superseded by version {target.version}",
            )
            completed.append((last.version, r.OUTCOME_SUPERSEDED))
        hist.append(
            HistoryEntry(
                target.version,
                now,
                r.OUTCOME_PROGRESSING,
                run_id=target.run_id or None,
                model=ctx.spec.model.name,
            )
        )
        started.append(target.version)
        was = f" (was {ctx.status.serving_version})" if ctx.status.serving_version else ""
        b.event(
            False,
            r.EV_ROLLOUT_STARTED,
            f"rolling out version {target.version} ({target.uri}){was}{_promoted(ctx, target)}",
        )
    last = hist[-1]
    if complete and last.outcome in (r.OUTCOME_PROGRESSING, r.OUTCOME_FAILED):
        hist[-1] = replace(
            last,
            outcome=r.OUTCOME_SUCCEEDED,
            finished_at=now,
            # A rollback's reason stays; a stalled rollout that recovered drops its deadline.
            reason=None if last.outcome == r.OUTCOME_FAILED else last.reason,
        )
        completed.append((last.version, r.OUTCOME_SUCCEEDED))
        b.event(False, r.EV_ROLLOUT_SUCCEEDED, f"version {last.version} is serving")
    elif stalled and last.outcome == r.OUTCOME_PROGRESSING:
        hist[-1] = replace(
            last, outcome=r.OUTCOME_FAILED, finished_at=now, reason=r.PROGRESS_DEADLINE_EXCEEDED
        )
        completed.append((last.version, r.OUTCOME_FAILED))
        b.event(
            True, r.EV_ROLLOUT_FAILED, f"version {last.version} did not become available in time"
        )
    return hist, tuple(started), tuple(completed)


def _promoted(ctx: Context, target: _Target) -> str:
    """Who moved the alias this rollout follows, when `modeldeploy promote` recorded it: the
    Event then says who put the version there, next to the operator's own record."""
    res, alias = ctx.resolution, ctx.spec.model.alias
    if not alias or not isinstance(res, ResolvedVersion) or res.version != target.version:
        return ""
    found = [p for p in records.promotions(res.tags) if p.stage == alias]
    return f"; promoted to {alias} by {found[0].by} at {found[0].at}" if found else ""


# A rollout's own Event already says the phase it moves to: no PhaseChanged beside it. At 1000
# new ModelDeployments, four Events per rollout were a third of the operator's API requests
# (issue 14); a rollout now posts two, and every other phase change still has its Event.
_SAID_BY = {r.PROGRESSING: r.EV_ROLLOUT_STARTED, r.HEALTHY: r.EV_ROLLOUT_SUCCEEDED}


def _phase_event(ctx: Context, b: _Builder, phase: str) -> None:
    # A first phase of Healthy means a lost status was just rebuilt from what already serves.
    adopted = ctx.status.phase is None and phase == r.HEALTHY
    said = any(ev.reason == _SAID_BY.get(phase) for ev in b.events)
    if ctx.status.phase != phase and not adopted and not said:
        warning = phase in (r.DEGRADED, r.FAILED)
        b.event(warning, r.EV_PHASE_CHANGED, f"phase {ctx.status.phase or '-'} → {phase}")
