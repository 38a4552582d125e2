"""ModelDeployment status: typed, with a pure condition helper.

The whole next status is computed, compared with the current one (`to_dict()` equality) and
written once; `set_condition` keeps lastTransitionTime when a condition's status did not change,
so an unchanged world produces an identical status and no write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api import reasons as r


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time written by `iso` or `iso_ms`; None when absent or bad."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def iso_ms(ts: datetime) -> str:
    """Millisecond precision, for history: alerts are compared with a rollout's start, and a
    rollout may start within the same second as the alert that ended the one before."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        return cls(
            type=str(d.get("type", "")),
            status=str(d.get("status", "Unknown")),
            reason=str(d.get("reason", "")),
            message=str(d.get("message", "")),
            last_transition_time=str(d.get("lastTransitionTime", "")),
            observed_generation=d.get("observedGeneration"),
        )


@dataclass(frozen=True)
class HistoryEntry:
    version: str
    started_at: str
    outcome: str
    finished_at: str | None = None
    reason: str | None = None
    run_id: str | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"version": self.version, "startedAt": self.started_at, "outcome": self.outcome}
        if self.finished_at:
            out["finishedAt"] = self.finished_at
        if self.reason:
            out["reason"] = self.reason
        if self.run_id:
            out["runId"] = self.run_id
        if self.model:
            out["model"] = self.model
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            version=str(d.get("version", "")),
            started_at=str(d.get("startedAt", "")),
            outcome=str(d.get("outcome", "")),
            finished_at=d.get("finishedAt"),
            reason=d.get("reason"),
            run_id=d.get("runId"),
            model=d.get("model"),
        )


# status.canary.analysis[] figures: (field in AnalysisRecord, key in status)
_FIGURES = (
    ("window_seconds", "windowSeconds"),
    ("canary_requests", "canaryRequests"),
    ("stable_requests", "stableRequests"),
    ("canary_error_rate", "canaryErrorRate"),
    ("stable_error_rate", "stableErrorRate"),
    ("canary_latency_p99", "canaryLatencyP99"),
    ("stable_latency_p99", "stableLatencyP99"),
    ("output_psi", "outputPsi"),
    ("canary_confidence", "canaryConfidence"),
    ("stable_confidence", "stableConfidence"),
    ("canary_input_psi", "canaryInputPsi"),
    ("stable_input_psi", "stableInputPsi"),
)
_INTEGERS = {"windowSeconds", "canaryRequests", "stableRequests"}


@dataclass(frozen=True)
class AnalysisRecord:
    """One analysis of a canary step: the verdict, why, and the figures it was judged on."""

    step: int
    verdict: str  # Passed | Failed | Inconclusive | Unavailable
    at: str
    message: str
    window_seconds: float | None = None
    canary_requests: float | None = None
    stable_requests: float | None = None
    canary_error_rate: float | None = None
    stable_error_rate: float | None = None
    canary_latency_p99: float | None = None
    stable_latency_p99: float | None = None
    output_psi: float | None = None
    canary_confidence: float | None = None
    stable_confidence: float | None = None
    canary_input_psi: float | None = None
    stable_input_psi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "verdict": self.verdict,
            "at": self.at,
            "message": self.message,
        }
        for attr, key in _FIGURES:
            value = getattr(self, attr)
            if value is not None:
                out[key] = round(value) if key in _INTEGERS else round(float(value), 4)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AnalysisRecord:
        figures = {
            attr: float(d[key]) for attr, key in _FIGURES if isinstance(d.get(key), int | float)
        }
        return cls(
            step=int(d.get("step") or 0),
            verdict=str(d.get("verdict", "")),
            at=str(d.get("at", "")),
            message=str(d.get("message", "")),
            **figures,
        )


@dataclass(frozen=True)
class CanaryStatus:
    """status.canary: the version under test and where its steps are. Absent when none runs."""

    version: str
    model_uri: str
    run_id: str
    strategy: str  # Canary | BlueGreen
    step: int
    steps: int
    weight: int
    effective_weight: int
    started_at: str
    state: str  # Scaling | Analysing | Holding | Promoting
    step_started_at: str | None = None
    last_analysis_at: str | None = None
    analysis: tuple[AnalysisRecord, ...] = ()

    @property
    def step_text(self) -> str:
        if self.strategy == "BlueGreen":
            return f"preview {self.state.lower()}"
        return f"{min(self.step + 1, self.steps)}/{self.steps} {self.state.lower()}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "modelUri": self.model_uri,
            "strategy": self.strategy,
            "step": self.step,
            "steps": self.steps,
            "stepText": self.step_text,
            "weight": self.weight,
            "effectiveWeight": self.effective_weight,
            "startedAt": self.started_at,
            "state": self.state,
            "analysis": [a.to_dict() for a in self.analysis],
        }
        optional = {
            "runId": self.run_id,
            "stepStartedAt": self.step_started_at,
            "lastAnalysisAt": self.last_analysis_at,
        }
        out.update({k: v for k, v in optional.items() if v})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CanaryStatus | None:
        if not d or not d.get("version"):
            return None
        return cls(
            version=str(d["version"]),
            model_uri=str(d.get("modelUri", "")),
            run_id=str(d.get("runId", "")),
            strategy=str(d.get("strategy") or ""),
            step=int(d.get("step") or 0),
            steps=int(d.get("steps") or 1),
            weight=int(d.get("weight") or 0),
            effective_weight=int(d.get("effectiveWeight") or 0),
            started_at=str(d.get("startedAt", "")),
            state=str(d.get("state") or ""),
            step_started_at=d.get("stepStartedAt"),
            last_analysis_at=d.get("lastAnalysisAt"),
            analysis=tuple(AnalysisRecord.from_dict(a) for a in d.get("analysis") or ()),
        )


@dataclass(frozen=True)
class Status:
    phase: str | None = None
    selector: str | None = None
    serving_version: str | None = None
    resolved_version: str | None = None
    model_uri: str | None = None
    run_id: str | None = None
    observed_generation: int | None = None
    rejected_versions: tuple[str, ...] = ()
    allow_version_handled: str | None = None
    conditions: tuple[Condition, ...] = ()
    history: tuple[HistoryEntry, ...] = field(default=())
    canary: CanaryStatus | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        scalars = {
            "phase": self.phase,
            "selector": self.selector,
            "servingVersion": self.serving_version,
            "resolvedVersion": self.resolved_version,
            "modelUri": self.model_uri,
            "runId": self.run_id,
            "observedGeneration": self.observed_generation,
        }
        out.update({k: v for k, v in scalars.items() if v is not None})
        if self.rejected_versions:
            out["rejectedVersions"] = list(self.rejected_versions)
        if self.allow_version_handled:
            out["allowVersionHandled"] = self.allow_version_handled
        out["conditions"] = [c.to_dict() for c in self.conditions]
        out["history"] = [h.to_dict() for h in self.history]
        if self.canary is not None:
            out["canary"] = self.canary.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Status:
        d = d or {}
        return cls(
            phase=d.get("phase"),
            selector=d.get("selector"),
            serving_version=d.get("servingVersion"),
            resolved_version=d.get("resolvedVersion"),
            model_uri=d.get("modelUri"),
            run_id=d.get("runId"),
            observed_generation=d.get("observedGeneration"),
            rejected_versions=tuple(d.get("rejectedVersions") or ()),
            allow_version_handled=d.get("allowVersionHandled"),
            conditions=tuple(Condition.from_dict(c) for c in d.get("conditions") or ()),
            history=tuple(HistoryEntry.from_dict(h) for h in d.get("history") or ()),
            canary=CanaryStatus.from_dict(d.get("canary")),
        )


def set_condition(
    conditions: tuple[Condition, ...],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> tuple[Condition, ...]:
    """Conditions with `type_` set; lastTransitionTime moves only when the status flips."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old and old.status == value else iso(now)
    new = Condition(type_, value, reason, message, since, generation)
    if old is None:
        return (*conditions, new)
    return tuple(new if c.type == type_ else c for c in conditions)


def with_history(status: Status, history: list[HistoryEntry], limit: int) -> Status:
    return replace(status, history=tuple(history[-limit:]))


def with_kstatus(status: Status, now: datetime, generation: int | None) -> Status:
    """The status with kstatus' conditions derived from its phase and the conditions the planner
    set: `Reconciling=True` while the operator is working towards the spec (resolving, rolling
    out, stepping a canary, rolling back), `Stalled=True` when it cannot get there without a
    person (a version rolled back or refused, the progress deadline passed, an alert with no
    rollback to answer it, an approval to give, an invalid spec, a model that is gone), and
    neither once the spec is served (Healthy). kstatus reads the first of the two that is True;
    at most one is ever present. Reasons and messages are the ones the condition that explains
    the phase carries, so `kubectl wait`, Flux and Argo CD show the same words as `Ready`."""

    def cond(type_: str) -> Condition | None:
        return status.condition(type_)

    def said(*types: str) -> Condition | None:
        return next((c for t in types if (c := cond(t)) is not None), None)

    phase = status.phase
    why: tuple[str, str, str] | None = None  # (condition type, reason, message)
    degraded = cond(r.COND_DEGRADED)
    if phase in (r.RESOLVING, r.PROGRESSING):
        c = said(r.COND_PROGRESSING) if phase == r.PROGRESSING else said(r.READY)
        why = (r.COND_RECONCILING, c.reason if c else phase, c.message if c else phase)
    elif phase == r.ROLLING_BACK:
        c = said(r.COND_PROGRESSING)
        msg = f"rolling back: {c.message}" if c else "rolling back"
        why = (r.COND_RECONCILING, r.ROLLING_BACK_REASON, msg)
    elif phase == r.DEGRADED and degraded is not None and degraded.reason == r.REGISTRY_UNREACHABLE:
        # An alert's rollback waits for the registry to confirm its target: it goes on by itself.
        why = (r.COND_RECONCILING, degraded.reason, degraded.message)
    elif phase == r.AWAITING_APPROVAL:
        c = said(r.COND_APPROVED, r.READY)
        why = (r.COND_STALLED, r.APPROVAL_MISSING, c.message if c else phase)
    elif phase in (r.ROLLED_BACK, r.DEGRADED):
        c = degraded if degraded is not None and degraded.status == "True" else said(r.READY)
        why = (r.COND_STALLED, c.reason if c else phase, c.message if c else phase)
    elif phase == r.FAILED:
        c = said(r.READY)
        why = (r.COND_STALLED, c.reason if c else phase, c.message if c else phase)
    conditions = tuple(
        c
        for c in status.conditions
        if c.type not in (r.COND_RECONCILING, r.COND_STALLED) or (why and c.type == why[0])
    )
    if why is not None:
        type_, reason, message = why
        conditions = set_condition(conditions, type_, True, reason, message, now, generation)
    return replace(status, conditions=conditions)
