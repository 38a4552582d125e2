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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.alerts.store import FiringAlert
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import Condition, HistoryEntry, Status, iso_ms, set_condition
from modeldeploy.registry.types import ModelNotFound, RegistryError, ResolvedVersion
from modeldeploy.render import objects as render
from modeldeploy.rollout.rollback import Assessment, Rollback, Target, assess

PROGRESSING_RECHECK_SECONDS = 10.0
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")


@dataclass(frozen=True)
class DeploymentState:
    """What the serving Deployment reports, reduced to what the rules need."""

    version: str | None
    model_uri: str | None
    run_id: str | None
    replicas: int
    updated: int
    ready: int
    available: int
    total: int
    generation: int
    observed_generation: int
    deadline_exceeded: bool

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeploymentState:
        meta, spec, st = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
        template = spec.get("template", {}).get("metadata", {})
        labels, ann = template.get("labels") or {}, template.get("annotations") or {}
        stalled = any(
            c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
            for c in st.get("conditions") or ()
        )
        return cls(
            version=labels.get(names.LABEL_MODEL_VERSION),
            model_uri=ann.get(render.ANN_MODEL_URI),
            run_id=ann.get(render.ANN_RUN_ID),
            replicas=int(spec.get("replicas", 1)),
            updated=int(st.get("updatedReplicas") or 0),
            ready=int(st.get("readyReplicas") or 0),
            available=int(st.get("availableReplicas") or 0),
            total=int(st.get("replicas") or 0),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(st.get("observedGeneration") or 0),
            deadline_exceeded=stalled,
        )

    def complete(self, replicas: int) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.replicas == replicas
            and self.updated == replicas
            and self.available == replicas
            and self.total == replicas
        )


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


_Target = Target


class _Builder:
    """Accumulates conditions and events for one plan."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conditions: tuple[Condition, ...] = ctx.status.conditions
        self.events: list[Event] = []

    def cond(self, type_: str, status: bool, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions, type_, status, reason, message, self.ctx.now, self.ctx.generation
        )

    def event(self, warning: bool, reason: str, message: str) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def transition(self, type_: str) -> tuple[str | None, str | None]:
        """(old status, new status) of a condition, for transition-only events."""
        old = self.ctx.status.condition(type_)
        new = next((c for c in self.conditions if c.type == type_), None)
        return (old.status if old else None, new.status if new else None)


def plan(ctx: Context) -> Plan:
    b = _Builder(ctx)
    res, dep, old = ctx.resolution, ctx.deployment, ctx.status
    target, resolved = _registry(ctx, b)
    selected = res.version if isinstance(res, ResolvedVersion) else None
    # The allow-version annotation acts once per value.
    allow = ctx.allow_version if ctx.allow_version != old.allow_version_handled else None
    verdict = assess(ctx.spec, old, dep.version if dep else None, selected, ctx.alerts, allow)
    if verdict.override is not None:
        target = verdict.override
    history_before = _apply_rollback(ctx, b, verdict)

    if target is None:
        return _nothing_to_serve(ctx, b, resolved)

    desired, prune = _desired_objects(ctx, b, target)
    # The deadline condition counts only once the Deployment controller has seen this template:
    # right after a new version is applied, the old rollout's condition is still there.
    stalled = (
        dep is not None
        and dep.version == target.version
        and dep.deadline_exceeded
        and dep.observed_generation >= dep.generation
    )
    complete = (
        dep is not None
        and dep.version == target.version
        and dep.complete(ctx.spec.serving.replicas)
    )
    history, started, completed = _history(
        ctx, b, target, complete, stalled and not complete, history_before
    )
    serving_version = target.version if complete else old.serving_version
    not_found = isinstance(res, ModelNotFound)

    replicas = ctx.spec.serving.replicas
    counts = (
        f"{dep.updated}/{replicas} updated, {dep.available}/{replicas} available"
        if dep is not None
        else f"0/{replicas} updated"
    )
    held_back = bool(verdict.rejected) and (selected is None or selected in verdict.rejected)
    if complete:
        unhealthy = not_found or verdict.unanswered is not None
        phase = r.ROLLED_BACK if held_back else r.DEGRADED if unhealthy else r.HEALTHY
        why = r.SCALED_TO_ZERO if replicas == 0 else r.MODEL_SERVING
        b.cond(r.READY, True, why, f"version {target.version} serving on {replicas} replica(s)")
        b.cond(
            r.COND_PROGRESSING, False, r.ROLLOUT_COMPLETE, f"version {target.version} rolled out"
        )
    elif stalled:
        phase = r.DEGRADED
        msg = f"version {target.version} not available within the progress deadline ({counts})"
        b.cond(r.READY, False, r.PROGRESS_DEADLINE_EXCEEDED, msg)
        b.cond(r.COND_PROGRESSING, False, r.PROGRESS_DEADLINE_EXCEEDED, msg)
    else:
        phase = r.ROLLING_BACK if held_back else r.PROGRESSING
        b.cond(
            r.READY, False, r.ROLLOUT_IN_PROGRESS, f"rolling out version {target.version}: {counts}"
        )
        b.cond(
            r.COND_PROGRESSING, True, r.ROLLOUT_IN_PROGRESS, f"version {target.version}: {counts}"
        )
    if verdict.unanswered is not None:
        a = verdict.unanswered
        why = (
            "rollback is disabled"
            if verdict.reason == r.ROLLBACK_DISABLED
            else "no earlier healthy version"
        )
        msg = f"{a.name} firing for version {a.model_version}; {why}"
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
    )
    return Plan(
        apply=desired,
        prune=prune,
        status=status,
        events=tuple(b.events),
        rollouts_started=started,
        rollouts_completed=completed,
        requeue_after=PROGRESSING_RECHECK_SECONDS
        if phase in (r.PROGRESSING, r.ROLLING_BACK)
        else None,
        rollback=verdict.rollback,
    )


def _registry(ctx: Context, b: _Builder) -> tuple[_Target | None, str | None]:
    """Target version and status.resolvedVersion, with RegistryReachable set."""
    res, dep, model = ctx.resolution, ctx.deployment, ctx.spec.model
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
    if dep is not None and dep.version and dep.model_uri:
        return _Target(dep.version, dep.model_uri, dep.run_id or ""), resolved
    return None, resolved


def _nothing_to_serve(ctx: Context, b: _Builder, resolved: str | None) -> Plan:
    res = ctx.resolution
    if isinstance(res, ModelNotFound):
        phase, reason = r.FAILED, r.MODEL_NOT_FOUND
        b.cond(r.COND_DEGRADED, True, reason, str(res))
    else:
        phase, reason = r.RESOLVING, r.REGISTRY_UNREACHABLE
        b.cond(r.COND_DEGRADED, False, r.AS_EXPECTED, "")
    b.cond(r.READY, False, reason, f"nothing is serving: {res}")
    b.cond(
        r.COND_PROGRESSING, False, r.NOTHING_SERVING, "waiting for the registry to name a version"
    )
    _phase_event(ctx, b, phase)
    status = replace(
        ctx.status,
        phase=phase,
        selector=ctx.spec.model.selector,
        resolved_version=resolved,
        observed_generation=ctx.generation,
        conditions=b.conditions,
    )
    return Plan(apply=(), prune=(), status=status, events=tuple(b.events))


def _desired_objects(
    ctx: Context, b: _Builder, target: _Target
) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[str, str], ...]]:
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
    )
    objs = [render.build_deployment(rc), render.build_service(rc)]
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
        why = f"{rb.alert.name} fired for version {rb.bad}"
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
        b.event(True, r.EV_ROLLED_BACK, msg)
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
            False, r.EV_ROLLOUT_STARTED, f"rolling out version {target.version} ({target.uri}){was}"
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


def _phase_event(ctx: Context, b: _Builder, phase: str) -> None:
    if ctx.status.phase != phase:
        warning = phase in (r.DEGRADED, r.FAILED)
        b.event(warning, r.EV_PHASE_CHANGED, f"phase {ctx.status.phase or '-'} → {phase}")
