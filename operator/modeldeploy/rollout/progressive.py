"""Canary and blue-green steps: a pure state machine over status.canary.

The planner decides *what* serves (the selector's version, a rollback target); this module
decides *how* a new version reaches traffic when spec.strategy asks for it:

* Stable → Canary step 0 when the target differs from what the stable Deployment runs. Each step
  is `Scaling` (the canary's pods for the step's weight are starting, the route's weights are
  being set) until the canary Deployment is complete and the weights are in place; then
  `Analysing` from `stepStartedAt`: the reconciler measures the window every analysis interval
  (`analysis_due`) and the judge's record comes back in the context. A Passed record at the end
  of the step's duration moves to the next step; after the last, `Promoting`: the stable
  Deployment rolls to the new version (blue-green first points the Service <name> at the
  preview), the canary stays until the stable one is complete, then goes. Inconclusive or
  Unavailable records hold the step (`Holding` once its duration is over, or at once for an
  unreachable Prometheus): never a pass.
* A Failed record, or a firing rollback alert for the canary's version, is a rollback
  (`failure`): the planner rejects the version through the rollback path, and the canary goes.
* The selector moving to another version restarts at step 0 on it; a rollback of the stable
  version, or the selector naming the stable version again, removes the canary.

Everything a restart needs is in status.canary, so an operator that restarts mid-step resumes at
the same step; the analysis window starts at the stored stepStartedAt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from modeldeploy import names
from modeldeploy.alerts.store import FiringAlert
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import BLUE_GREEN, ModelDeploymentSpec
from modeldeploy.api.status import AnalysisRecord, CanaryStatus, Status, epoch, iso
from modeldeploy.render.objects import split_services
from modeldeploy.rollout import analysis as verdicts
from modeldeploy.rollout.deployment import DeploymentState
from modeldeploy.rollout.rollback import Rollback, Target

SCALING, ANALYSING = r.CANARY_SCALING, r.CANARY_ANALYSING
HOLDING, PROMOTING = r.CANARY_HOLDING, r.CANARY_PROMOTING
ANALYSIS_KEEP = 12  # status.canary.analysis entries (one per step, newest last)


@dataclass(frozen=True)
class RouteState:
    """The user's HTTPRoute, reduced to the backendRefs naming our two Services."""

    name: str
    found: bool
    stable_service: str = ""
    canary_service: str = ""
    # (rule index, backendRef index, weight) of refs to the stable and the canary Service.
    stable_refs: tuple[tuple[int, int, int], ...] = ()
    canary_refs: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def from_object(
        cls, name: str, obj: Mapping[str, Any] | None, stable: str, canary: str
    ) -> RouteState:
        if obj is None:
            return cls(name, False, stable, canary)
        s: list[tuple[int, int, int]] = []
        c: list[tuple[int, int, int]] = []
        for i, rule in enumerate((obj.get("spec") or {}).get("rules") or ()):
            for j, ref in enumerate(rule.get("backendRefs") or ()):
                kind, group = ref.get("kind", "Service"), ref.get("group", "")
                if kind != "Service" or group not in ("", "core"):
                    continue
                weight = int(ref.get("weight", 1))
                if ref.get("name") == stable:
                    s.append((i, j, weight))
                elif ref.get("name") == canary:
                    c.append((i, j, weight))
        return cls(name, True, stable, canary, tuple(s), tuple(c))

    @property
    def usable(self) -> bool:
        return self.found and bool(self.stable_refs) and bool(self.canary_refs)

    def canary_weight(self) -> int:
        """Percent of the route's traffic on the canary Service (first rule that has both)."""
        for i, _, cw in self.canary_refs:
            sw = next((w for ri, _, w in self.stable_refs if ri == i), 0)
            return round(100 * cw / (sw + cw)) if sw + cw else 0
        return 0

    def patch(self, canary_percent: int) -> tuple[dict[str, Any], ...]:
        """JSON patch ops setting the weights, each guarded by a test of the ref's name, so a
        route edited meanwhile (refs reordered) fails the patch instead of being corrupted."""
        ops: list[dict[str, Any]] = []
        for refs, name, weight in (
            (self.stable_refs, self.stable_service, 100 - canary_percent),
            (self.canary_refs, self.canary_service, canary_percent),
        ):
            for i, j, old in refs:
                if old == weight:
                    continue
                path = f"/spec/rules/{i}/backendRefs/{j}"
                ops.append({"op": "test", "path": f"{path}/name", "value": name})
                ops.append({"op": "add", "path": f"{path}/weight", "value": weight})
        return tuple(ops)


@dataclass(frozen=True)
class Progress:
    """What the planner renders for one reconcile of a progressive strategy."""

    stable: Target  # the version the stable Deployment runs
    canary: CanaryStatus | None  # next status.canary
    canary_replicas: int = 0  # 0: no canary Deployment
    active: str = names.TRACK_STABLE  # pods the Service <name> selects when services are split
    route_ops: tuple[dict[str, Any], ...] = ()
    events: tuple[tuple[bool, str, str], ...] = ()  # (warning, reason, message)
    analysis_condition: tuple[bool | str, str, str] | None = None  # (status, reason, message)


def canary_replicas(spec: ModelDeploymentSpec, stable: int, weight: int) -> int:
    """Pods for a canary at `weight` % beside `stable` stable pods. Without a route the traffic
    share is the ready-pod share, so c/(stable + c) ≈ weight; with a route, a fixed share of the
    stable's pods (the route sets the traffic); blue-green previews at full size."""
    if spec.strategy.type == BLUE_GREEN:
        return max(1, stable)
    if spec.strategy.http_route:
        return max(1, math.ceil(stable * weight / 100))
    return max(1, round(stable * weight / (100 - weight)))


def failure(
    status: Status,
    spec: ModelDeploymentSpec,
    record: AnalysisRecord | None,
    alerts: Sequence[FiringAlert],
    stable: str | None,
    now: datetime,
) -> Rollback | None:
    """A rollback of the canary: a Failed analysis of its current step, or a rollback alert
    firing for its version since it started."""
    cs = status.canary
    if cs is None or stable is None or cs.version == stable or cs.state == PROMOTING:
        return None
    since = epoch(cs.started_at) or 0.0
    for a in alerts:
        ours = a.model_version == cs.version and a.name in spec.rollback.on_alerts
        if ours and a.received_at >= since:
            return Rollback(bad=cs.version, good=stable, alert=a)
    if record is not None and record.verdict == verdicts.FAILED:
        step = _step_text(cs)
        alert = FiringAlert(
            name=names.CANARY_ANALYSIS,
            namespace="",
            modeldeployment="",
            model_version=cs.version,
            fingerprint="",
            received_at=now.timestamp(),
            summary=f"{step}: {record.message}",
        )
        return Rollback(bad=cs.version, good=stable, alert=alert)
    return None


def _step_text(cs: CanaryStatus) -> str:
    if cs.strategy == BLUE_GREEN:
        return "blue-green preview"
    return f"canary step {cs.step + 1}/{cs.steps} ({cs.weight}%)"


def analysis_due(status: Status, spec: ModelDeploymentSpec, now: datetime) -> float | None:
    """The window (seconds since the step started) to measure now, or None when no analysis
    is due: none runs, the step's pods are not ready yet, or the last one is too recent."""
    cs = status.canary
    if cs is None or cs.state not in (ANALYSING, HOLDING):
        return None
    start = epoch(cs.step_started_at)
    if start is None:
        return None
    interval = spec.strategy.analysis.interval
    last = epoch(cs.last_analysis_at)
    t = now.timestamp()
    if t - start < interval or (last is not None and t - last < interval):
        return None
    return t - start


def _step_weight(spec: ModelDeploymentSpec, step: int) -> int:
    if spec.strategy.type == BLUE_GREEN:
        return 0
    return spec.strategy.steps[min(step, len(spec.strategy.steps) - 1)].weight


def _step_duration(spec: ModelDeploymentSpec, step: int) -> float:
    if spec.strategy.type == BLUE_GREEN:
        return spec.strategy.preview_duration
    return spec.strategy.steps[min(step, len(spec.strategy.steps) - 1)].duration


def _start(spec: ModelDeploymentSpec, target: Target, now: datetime) -> CanaryStatus:
    steps = 1 if spec.strategy.type == BLUE_GREEN else len(spec.strategy.steps)
    return CanaryStatus(
        version=target.version,
        model_uri=target.uri,
        run_id=target.run_id,
        strategy=spec.strategy.type,
        step=0,
        steps=steps,
        weight=_step_weight(spec, 0),
        effective_weight=0,
        started_at=iso(now),
        state=SCALING,
    )


def _with_record(cs: CanaryStatus, record: AnalysisRecord, now: datetime) -> CanaryStatus:
    kept = tuple(a for a in cs.analysis if a.step != record.step)
    return replace(cs, analysis=(*kept, record)[-ANALYSIS_KEEP:], last_analysis_at=iso(now))


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw that the steps depend on."""

    stable_ready: int  # ready pods of the stable Deployment
    stable_complete: bool  # the stable Deployment fully runs the target (promotion done)
    canary: DeploymentState | None  # the canary Deployment
    route: RouteState | None  # None without spec.strategy.canary.trafficRouting
    # Every stable pod carries modeldeploy.io/track=stable, so a Service can select them alone.
    stable_tracked: bool = True

    def canary_runs(self, cs: CanaryStatus) -> bool:
        return self.canary is not None and self.canary.version == cs.version

    def canary_ready(self, cs: CanaryStatus, replicas: int) -> bool:
        return self.canary_runs(cs) and self.canary is not None and self.canary.complete(replicas)


def advance(
    spec: ModelDeploymentSpec,
    old: CanaryStatus | None,
    target: Target,
    running: Target | None,
    seen: Observed,
    record: AnalysisRecord | None,
    stable_replicas: int,
    now: datetime,
) -> Progress:
    """The next step of a progressive rollout of `target` over `running` (see the module doc).
    `record`: the analysis the reconciler just made of the stored step, if one was due."""
    if not spec.strategy.progressive or running is None:
        return Progress(stable=target, canary=None)
    if target.version == running.version:
        return _finishing(spec, old, target, seen, stable_replicas)
    events: list[tuple[bool, str, str]] = []
    cs = old
    if cs is None or cs.version != target.version or cs.strategy != spec.strategy.type:
        cs = _start(spec, target, now)
        was = f" (replacing the canary of version {old.version})" if old is not None else ""
        events.append((False, r.EV_CANARY_STARTED, f"{_step_text(cs)}: version {cs.version}{was}"))
    if cs.state == PROMOTING:
        return _progress(spec, cs, target, seen, stable_replicas, tuple(events))
    if split_services(spec) and not seen.stable_tracked:
        # The stable pods predate the track label and are being replaced: until they all carry
        # it, a Service cannot tell them from canary pods, so no canary pod may exist yet.
        return Progress(stable=running, canary=cs, events=tuple(events))
    want = canary_replicas(spec, stable_replicas, cs.weight)
    route = seen.route
    if cs.state == SCALING:
        weighted = route is None or (route.usable and route.canary_weight() == cs.weight)
        if seen.canary_ready(cs, want) and weighted:
            cs = replace(cs, state=ANALYSING, step_started_at=iso(now), last_analysis_at=None)
            events.append(
                (False, r.EV_CANARY_STEP, f"{_step_text(cs)}: version {cs.version} ready")
            )
    elif record is not None and record.step == cs.step:
        cs = _judged(spec, _with_record(cs, record, now), record, now, events)
    if cs.state == PROMOTING:  # just decided: the stable Deployment rolls to the new version
        return _progress(spec, cs, target, seen, stable_replicas, tuple(events))
    return _progress(spec, cs, running, seen, stable_replicas, tuple(events))


def _judged(
    spec: ModelDeploymentSpec,
    cs: CanaryStatus,
    record: AnalysisRecord,
    now: datetime,
    events: list[tuple[bool, str, str]],
) -> CanaryStatus:
    start = epoch(cs.step_started_at) or now.timestamp()
    over = now.timestamp() - start >= _step_duration(spec, cs.step)
    if record.verdict == verdicts.PASSED and over:
        nxt = cs.step + 1
        if nxt >= cs.steps:
            events.append(
                (False, r.EV_CANARY_PROMOTING, f"version {cs.version} passed every step; promoting")
            )
            return replace(cs, state=PROMOTING)
        events.append((False, r.EV_CANARY_STEP, f"{_step_text(cs)} passed: {record.message}"))
        return replace(
            cs,
            step=nxt,
            weight=_step_weight(spec, nxt),
            state=SCALING,
            step_started_at=None,
            last_analysis_at=None,
        )
    holding = record.verdict == verdicts.UNAVAILABLE or (record.verdict != verdicts.PASSED and over)
    if holding and cs.state != HOLDING:
        events.append((True, r.EV_CANARY_HOLDING, f"{_step_text(cs)} holds: {record.message}"))
    return replace(cs, state=HOLDING if holding else ANALYSING)


def _finishing(
    spec: ModelDeploymentSpec,
    old: CanaryStatus | None,
    target: Target,
    seen: Observed,
    stable_replicas: int,
) -> Progress:
    """The stable Deployment runs the target: a promotion finishing (the canary stays until the
    stable pods are all updated and available), or the selector back on the stable version."""
    if old is None or old.version != target.version or seen.stable_complete:
        return Progress(stable=target, canary=None, route_ops=_route_ops(seen.route, 0))
    cs = replace(old, state=PROMOTING)
    return _progress(spec, cs, target, seen, stable_replicas, ())


def without_canary(stable: Target, route: RouteState | None) -> Progress:
    """No canary, because of a rollback (decided now, or held while the selector names the
    rejected version): the route's weights go back to the stable Service, as after a promotion.
    The canary's Service goes with the canary, and a Gateway answers requests it still weighs
    onto a Service without endpoints with errors."""
    return Progress(stable=stable, canary=None, route_ops=_route_ops(route, 0))


def _route_ops(route: RouteState | None, percent: int) -> tuple[dict[str, Any], ...]:
    if route is None or not route.usable:
        return ()
    return route.patch(percent)


def _progress(
    spec: ModelDeploymentSpec,
    cs: CanaryStatus,
    stable: Target,
    seen: Observed,
    stable_replicas: int,
    events: tuple[tuple[bool, str, str], ...],
) -> Progress:
    """Render inputs for `cs`: replicas, the Service's active track, route weights, the
    effective weight and the Analysis condition; `stable` is what the stable Deployment runs."""
    replicas = canary_replicas(spec, stable_replicas, cs.weight)
    ours = seen.canary_runs(cs)
    complete = seen.canary_ready(cs, replicas)
    route = seen.route
    promoting = cs.state == PROMOTING
    active = names.TRACK_STABLE
    if spec.strategy.type == BLUE_GREEN:
        switched = promoting and complete
        active = names.TRACK_CANARY if switched else names.TRACK_STABLE
        effective = 100 if switched else 0
    elif route is not None:
        effective = route.canary_weight() if route.usable else 0
    else:
        ready = seen.canary.ready if ours and seen.canary is not None else 0
        total = ready + seen.stable_ready
        effective = round(100 * ready / total) if total else 0
    ops: tuple[dict[str, Any], ...] = ()
    if route is not None:
        if complete or (ours and promoting):
            percent = cs.weight
        elif ours and route.usable:
            # The next step's pods are starting: the share this version already has stays.
            percent = min(route.canary_weight(), cs.weight)
        else:
            percent = 0
        ops = _route_ops(route, percent)
    cs = replace(cs, effective_weight=effective)
    return Progress(
        stable=stable,
        canary=cs,
        canary_replicas=replicas,
        active=active,
        route_ops=ops,
        events=events,
        analysis_condition=_condition(cs, route, seen),
    )


def _condition(
    cs: CanaryStatus, route: RouteState | None, seen: Observed
) -> tuple[bool | str, str, str]:
    """The Analysis condition: True once the current step's last analysis passed, False when
    it could not pass (or the route is unusable, or the canary's pods never became available),
    Unknown while it waits for its first one."""
    step = _step_text(cs)
    dep = seen.canary
    if cs.state == SCALING and dep is not None and seen.canary_runs(cs) and dep.deadline_exceeded:
        msg = f"{step}: the pods of version {cs.version} did not become available in time"
        return False, r.PROGRESS_DEADLINE_EXCEEDED, msg
    if route is not None and not route.usable:
        why = "not found" if not route.found else "has no backendRefs to both Services"
        return False, r.TRAFFIC_ROUTE_INVALID, f"HTTPRoute {route.name} {why}; {step} waits"
    if cs.state == PROMOTING:
        return True, r.ANALYSIS_PASSED, f"version {cs.version} passed every step"
    last = next((a for a in reversed(cs.analysis) if a.step == cs.step), None)
    if cs.state == SCALING or last is None:
        return "Unknown", r.AWAITING_ANALYSIS, f"{step}: waiting for its pods and first analysis"
    reasons = {
        verdicts.PASSED: r.ANALYSIS_PASSED,
        verdicts.INCONCLUSIVE: r.ANALYSIS_INCONCLUSIVE,
        verdicts.UNAVAILABLE: r.ANALYSIS_UNAVAILABLE,
        verdicts.FAILED: r.ANALYSIS_FAILED,
    }
    ok = last.verdict == verdicts.PASSED
    return ok, reasons.get(last.verdict, r.ANALYSIS_UNAVAILABLE), f"{step}: {last.message}"
