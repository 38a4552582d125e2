"""Rollback rules, a pure assessment with explicit limits.

* An alert listed in spec.rollback.onAlerts, firing for the version the pods run now, rolls back
  to the newest version whose rollout Succeeded and that is not rejected. The bad version is
  rejected for this ModelDeployment.
* A rejected version is not deployed again while the selector still names it. The selector
  naming another version, or the annotation `modeldeploy.io/allow-version: "<v>"`, clears it.
* Alerts for a version the pods no longer run are ignored, so one bad version causes one
  rollback however often its alert repeats or is delivered. So are alerts first heard of before
  the current rollout of that version started: they are about pods that are gone.
* The annotation acts once per value (status.allowVersionHandled remembers it), so leaving it in
  place cannot undo a later rollback.
* No healthy version to go back to, or rollback disabled: nothing changes but the status.
* A rollback target is a registry version, not a line of status: status can be written by anyone
  with status access or restored from a backup. Only entries of this model whose version is a
  registry version number count, and a version that failed its pre-flight check (gone from the
  registry, artifacts missing, not servable: `unservable`) is skipped for the next older one.
  When the registry cannot be asked about the target, the rollback waits for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from modeldeploy import names
from modeldeploy.alerts.store import FiringAlert
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import HistoryEntry, Status
from modeldeploy.registry.types import Unservable

ALLOW_VERSION_ANNOTATION = f"{names.GROUP}/allow-version"
# MLflow model versions are positive integers; anything else in status.history is not one.
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Target:
    version: str
    uri: str
    run_id: str


@dataclass(frozen=True)
class Rollback:
    bad: str
    good: str
    alert: FiringAlert

    @property
    def why(self) -> str:
        """The reason history, Events and the registry record (governance/lineage.py parses
        it back: "<alert> fired for version N", "CanaryAnalysis failed for version N")."""
        verb = "failed" if self.alert.name == names.CANARY_ANALYSIS else "fired"
        return f"{self.alert.name} {verb} for version {self.bad}"


@dataclass(frozen=True)
class Assessment:
    rejected: tuple[str, ...]
    override: Target | None = None  # deploy this instead of what the selector names
    rollback: Rollback | None = None  # roll back now
    unanswered: FiringAlert | None = None  # firing for the serving version, nothing done
    reason: str = ""  # why unanswered: RollbackDisabled | NoHealthyVersion | RegistryUnreachable
    cleared: tuple[str, ...] = ()


def valid_version(version: str) -> bool:
    """A registry version number: the only thing a history entry may name as a target."""
    return _VERSION.fullmatch(version) is not None


def last_healthy(
    history: Sequence[HistoryEntry],
    exclude: set[str],
    model: str | None = None,
    unservable: Mapping[str, Unservable] | None = None,
) -> HistoryEntry | None:
    """Newest Succeeded rollout of a valid version not in `exclude`, of `model` (entries that
    predate recording the model count as the same model), skipping versions whose pre-flight
    check failed. A version the registry could not be asked about is returned: the caller waits."""
    failed = {v for v, u in (unservable or {}).items() if not u.outage}
    for entry in reversed(history):
        same = model is None or entry.model in (None, model)
        if (
            same
            and entry.outcome == r.OUTCOME_SUCCEEDED
            and valid_version(entry.version)
            and entry.version not in exclude
            and entry.version not in failed
        ):
            return entry
    return None


def _rollout_start(history: Sequence[HistoryEntry], version: str | None) -> float | None:
    """Epoch seconds when the newest rollout of `version` started (second precision)."""
    for entry in reversed(history):
        if entry.version == version:
            try:
                return datetime.fromisoformat(entry.started_at.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


def assess(
    spec: ModelDeploymentSpec,
    status: Status,
    serving: str | None,
    selected: str | None,
    alerts: Sequence[FiringAlert],
    allow_version: str | None,
    unservable: Mapping[str, Unservable] | None = None,
    recorded: str | None = None,
) -> Assessment:
    """`serving`: the version in the Deployment's template; `selected`: the version the registry
    just named (None when it could not answer); `unservable`: pre-flight results that failed;
    `recorded`: a version the registry's rejected tag says this ModelDeployment rolled back,
    given only when the status lost its own record (see planner._recorded_rejection)."""
    unservable = unservable or {}
    model = spec.model.name
    # Rejections name versions of one model: after spec.model.name changes they mean nothing.
    last = status.history[-1] if status.history else None
    rejected = list(status.rejected_versions) if last is None or last.model in (None, model) else []
    if recorded is not None and recorded not in rejected:
        rejected.append(recorded)
    cleared = [
        v for v in rejected if (selected is not None and v != selected) or v == allow_version
    ]
    rejected = [v for v in rejected if v not in cleared]

    since = _rollout_start(status.history, serving)
    firing = [
        a
        for a in alerts
        if serving
        and a.model_version == serving
        and a.model_version not in rejected  # a rollback under way (its apply is retried)
        and a.name in spec.rollback.on_alerts
        and (since is None or a.received_at >= since)
    ]
    rollback = unanswered = None
    why = ""
    if firing:
        alert = firing[0]
        good = last_healthy(status.history, set(rejected) | {serving or ""}, model, unservable)
        if not spec.rollback.enabled:
            unanswered, why = alert, r.ROLLBACK_DISABLED
        elif good is None:
            unanswered, why = alert, r.NO_HEALTHY_VERSION
        elif good.version in unservable:  # the registry did not answer its pre-flight check
            unanswered, why = alert, r.REGISTRY_UNREACHABLE
        else:
            rejected.append(alert.model_version)
            rollback = Rollback(bad=alert.model_version, good=good.version, alert=alert)

    override = None
    if rollback is not None or (selected is not None and selected in rejected):
        good = last_healthy(status.history, set(rejected), model, unservable)
        if good is not None:
            run_id = good.run_id if good.run_id and _RUN_ID.fullmatch(good.run_id) else ""
            uri = names.model_version_uri(spec.model.name, good.version)
            override = Target(good.version, uri, run_id)
    return Assessment(tuple(rejected), override, rollback, unanswered, why, tuple(cleared))
