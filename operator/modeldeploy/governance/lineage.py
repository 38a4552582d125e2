"""Lineage of one model version: data → preprocessing → training run → model version → serving.

Everything is read, nothing written: the run's dataset and preprocessing records (tags and an
artifact written by modeldeploy.tracking), the run's params, metrics and code version, the
version's approvals, promotions and audit trail (governance/records.py), and the
ModelDeployments whose history says they served the version. `gather` builds a `Lineage`;
`to_dict` is the stable JSON (format "modeldeploy.lineage", version 1, every key in
docs/governance.md) and `lineage_text.render_text` the same in the same order, one line per item.

The cluster part is optional: a cluster that cannot be read leaves `deployments` empty, says why
in `cluster.error` and in `warnings`, and the MLflow part is still whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from modeldeploy import names
from modeldeploy.api.status import HistoryEntry, Status
from modeldeploy.governance import records
from modeldeploy.governance.actions import (
    GovernanceError,
    NotFound,
    Registry,
    Run,
    Version,
    check_version,
)
from modeldeploy.tracking.records import (
    DatasetError,
    DatasetVersion,
    PreprocessingError,
    PreprocessingStep,
)
from modeldeploy.tracking.records import Preprocessing as PreprocessingRecord

FORMAT: Final = "modeldeploy.lineage"
FORMAT_VERSION: Final = 1
# The operator's history reasons: "ModelHighErrorRate fired for version 3" on the rolled-back
# entry, "rollback: ModelHighErrorRate fired for version 3" on the rollback target's; a canary
# rolled back by its analysis: "CanaryAnalysis failed for version 3".
_ALERT_REASON = re.compile(r"^(rollback: )?(\S+) (?:fired|failed) for version \S+")


# --- what the cluster tells us ------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    time: str
    type: str
    reason: str
    message: str
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time or None,
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
        }


class Cluster(Protocol):
    """The three cluster reads lineage needs. ModelDeployments come back as the API's dicts."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any]: ...
    def find(self, namespace: str | None) -> list[Mapping[str, Any]]: ...
    def events(self, namespace: str, name: str) -> list[Event]: ...


@dataclass(frozen=True)
class Target:
    """The version a ModelDeployment serves (or resolved to, when nothing serves yet), and the
    registry its spec names (None: the default)."""

    namespace: str
    name: str
    model: str
    version: str
    tracking_uri: str | None
    obj: Mapping[str, Any]  # the ModelDeployment as read


def deployment_target(cluster: Cluster, namespace: str, name: str) -> Target:
    obj = cluster.get(namespace, name)
    spec = _mapping(obj.get("spec"))
    status = Status.from_dict(_mapping(obj.get("status")))
    version = status.serving_version or status.resolved_version
    model = str(_mapping(spec.get("model")).get("name") or "")
    if not version or not model:
        raise NotFound(f"ModelDeployment {namespace}/{name} serves no model version yet")
    uri = _mapping(spec.get("registry")).get("trackingUri")
    return Target(namespace, name, model, str(version), str(uri) if uri else None, obj)


# --- the lineage --------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    artifact: str
    summary: Mapping[str, Any]  # the run tag's value as written
    steps: tuple[PreprocessingStep, ...]  # from the artifact; empty when it could not be read

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "summary": dict(self.summary),
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Rollout:
    version: str
    model: str
    started_at: str
    finished_at: str
    outcome: str
    reason: str
    run_id: str
    kind: str  # "rollout", or "rollback" for the rollback target's entry
    alert: str  # the alert that rolled this entry back or caused this rollback, else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "model": self.model,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at or None,
            "outcome": self.outcome,
            "reason": self.reason or None,
            "alert": self.alert or None,
            "runId": self.run_id or None,
        }


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    model: str
    selector: str
    serving_version: str
    resolved_version: str
    phase: str
    rollouts: tuple[Rollout, ...]
    events: tuple[Event, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "model": self.model,
            "selector": self.selector or None,
            "servingVersion": self.serving_version or None,
            "resolvedVersion": self.resolved_version or None,
            "phase": self.phase or None,
            "rollouts": [r.to_dict() for r in self.rollouts],
            "events": [e.to_dict() for e in self.events],
        }


@dataclass(frozen=True)
class Lineage:
    model: str
    version: str
    registry: str
    datasets: tuple[DatasetVersion, ...]
    preprocessing: Preprocessing | None
    run: Run | None
    model_version: Version
    aliases: tuple[str, ...]
    deployments: tuple[Deployment, ...] = ()
    cluster_read: bool = False
    cluster_error: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": {"name": self.model, "version": self.version},
            "registry": self.registry,
            "datasets": [_dataset_dict(d) for d in self.datasets],
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "run": None if self.run is None else _run_dict(self.run),
            "modelVersion": _version_dict(self.model_version, self.aliases),
            "deployments": [d.to_dict() for d in self.deployments],
            "cluster": {"read": self.cluster_read, "error": self.cluster_error},
            "warnings": list(self.warnings),
        }


def gather(
    reg: Registry,
    cluster: Cluster | None,
    model: str,
    version: str,
    *,
    namespace: str | None = None,
    first: Target | None = None,
) -> Lineage:
    """The lineage of `model` `version`. The model and version must exist (NotFound, else
    Unreachable); the run, its records and the cluster are read as far as they can be, and
    what could not be read is named in `warnings`. `first` is a ModelDeployment already read
    (lineage NAMESPACE/NAME): it leads the deployments even if a wider search fails."""
    m = reg.model(model)
    mv = reg.version(m.name, check_version(m.name, version))
    warnings: list[str] = []
    run = _run(reg, mv, warnings)
    datasets: tuple[DatasetVersion, ...] = ()
    preprocessing = None
    if run is not None:
        datasets = _datasets(run, warnings)
        preprocessing = _preprocessing(reg, run, warnings)
    aliases = tuple(sorted(a for a, v in m.aliases.items() if v == mv.version))
    deployments: tuple[Deployment, ...] = ()
    read, error = False, None
    if cluster is None:
        error = "no cluster asked"
    else:
        try:
            deployments = _deployments(cluster, m.name, mv.version, namespace, first, warnings)
            read = True
        except GovernanceError as exc:
            error = str(exc)
            warnings.append(f"the cluster part is missing: {exc}")
    return Lineage(
        model=m.name, version=mv.version, registry=reg.uri, datasets=datasets,
        preprocessing=preprocessing, run=run, model_version=mv, aliases=aliases,
        deployments=deployments, cluster_read=read, cluster_error=error,
        warnings=tuple(warnings),
    )  # fmt: skip


def _run(reg: Registry, mv: Version, warnings: list[str]) -> Run | None:
    if not mv.run_id:
        warnings.append(
            f"version {mv.version} has no training run (registered from {mv.source or 'a path'})"
        )
        return None
    try:
        return reg.run(mv.run_id)
    except NotFound:
        warnings.append(f"the training run {mv.run_id} of version {mv.version} is gone")
        return None


def _datasets(run: Run, warnings: list[str]) -> tuple[DatasetVersion, ...]:
    """The run's dataset records, parsed by the class that writes them; one that does not
    parse is skipped with a warning, not guessed at."""
    out = []
    for key in sorted(k for k in run.tags if k.startswith(names.TAG_DATASET)):
        data = _json_object(run.tags[key], key, warnings)
        if data is None:
            continue
        try:
            out.append(DatasetVersion.from_dict(data))
        except DatasetError as exc:
            warnings.append(f"{key}: {exc}; skipped")
    return tuple(out)


def _dataset_dict(d: DatasetVersion) -> dict[str, Any]:
    record = d.to_dict()
    return {
        **{k: record[k] for k in ("name", "source", "hash", "hashAlgorithm", "rows", "columns")},
        "schema": record["schema"],
        "schemaTruncated": d.schema_truncated,
        "loggedAt": d.logged_at or None,
        "context": d.context or None,
        "targets": d.targets,
    }


def _preprocessing(reg: Registry, run: Run, warnings: list[str]) -> Preprocessing | None:
    raw = run.tags.get(names.TAG_PREPROCESSING)
    if raw is None:
        return None
    summary = _json_object(raw, names.TAG_PREPROCESSING, warnings) or {}
    # Always the one documented path: a tag must not make lineage download what it names.
    artifact = names.PREPROCESSING_ARTIFACT
    try:
        text = reg.run_artifact(run.id, artifact)
    except GovernanceError as exc:
        warnings.append(f"preprocessing artifact {artifact} could not be read: {exc}")
        return Preprocessing(artifact, summary, ())
    if text is None:
        warnings.append(f"run {run.id} has no preprocessing artifact {artifact}")
        return Preprocessing(artifact, summary, ())
    try:
        steps = PreprocessingRecord.from_json(text).steps
    except PreprocessingError as exc:
        warnings.append(f"preprocessing artifact {artifact}: {exc}")
        steps = ()
    return Preprocessing(artifact, summary, steps)


def _deployments(
    cluster: Cluster,
    model: str,
    version: str,
    namespace: str | None,
    first: Target | None,
    warnings: list[str],
) -> tuple[Deployment, ...]:
    if first is None:
        candidates = cluster.find(namespace)
    else:
        try:
            candidates = [first.obj, *cluster.find(namespace)]
        except GovernanceError as exc:
            warnings.append(f"other ModelDeployments were not searched: {exc}")
            candidates = [first.obj]
    found: dict[tuple[str, str], Deployment] = {}
    for obj in candidates:
        meta = _mapping(obj.get("metadata"))
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        named = first is not None and obj is first.obj
        if key not in found and (named or _served(obj, model, version)):
            found[key] = _deployment(cluster, obj, warnings)
    return tuple(found.values())


def _served(obj: Mapping[str, Any], model: str, version: str) -> bool:
    """Whether the ModelDeployment's history (or what it serves now) says it ran `version` of
    `model`; a history entry's own model name wins over the spec's, which may have changed."""
    spec_model = _mapping(_mapping(obj.get("spec")).get("model")).get("name")
    status = Status.from_dict(_mapping(obj.get("status")))
    if any((h.model or spec_model) == model and h.version == version for h in status.history):
        return True
    return spec_model == model and status.serving_version == version


def _deployment(cluster: Cluster, obj: Mapping[str, Any], warnings: list[str]) -> Deployment:
    meta = _mapping(obj.get("metadata"))
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    try:
        events = tuple(cluster.events(ns, name))
    except GovernanceError as exc:  # optional: RBAC may allow the resource but not Events
        warnings.append(f"Events of {ns}/{name} were not read: {exc}")
        events = ()
    spec_model = str(_mapping(_mapping(obj.get("spec")).get("model")).get("name") or "")
    status = Status.from_dict(_mapping(obj.get("status")))
    return Deployment(
        namespace=ns,
        name=name,
        model=spec_model,
        selector=status.selector or "",
        serving_version=status.serving_version or "",
        resolved_version=status.resolved_version or "",
        phase=status.phase or "",
        rollouts=tuple(_rollout(h, spec_model) for h in status.history),
        events=events,
    )


def _rollout(h: HistoryEntry, model: str) -> Rollout:
    match = _ALERT_REASON.match(h.reason or "")
    return Rollout(
        version=h.version,
        model=h.model or model,
        started_at=h.started_at,
        finished_at=h.finished_at or "",
        outcome=h.outcome,
        reason=h.reason or "",
        run_id=h.run_id or "",
        kind="rollback" if match and match.group(1) else "rollout",
        alert=match.group(2) if match else "",
    )


# --- output -------------------------------------------------------------------------------


def _run_dict(run: Run) -> dict[str, Any]:
    baseline = run.tags.get(names.TAG_DRIFT_BASELINE)
    return {
        "id": run.id,
        "name": run.name,
        "experimentId": run.experiment_id,
        "status": run.status,
        "startTime": run.start_time or None,
        "endTime": run.end_time or None,
        "user": run.user or None,
        "gitCommit": run.tags.get(names.MLFLOW_GIT_COMMIT_TAG) or None,
        "source": run.tags.get("mlflow.source.name") or None,
        "params": dict(sorted(run.params.items())),
        "metrics": dict(sorted(run.metrics.items())),
        "driftBaseline": _loads(baseline) if baseline else None,
    }


def _version_dict(mv: Version, aliases: Sequence[str]) -> dict[str, Any]:
    return {
        "name": mv.model,
        "version": mv.version,
        "source": mv.source,
        "runId": mv.run_id or None,
        "modelId": mv.model_id or None,
        "createdAt": mv.created_at or None,
        "description": mv.description or None,
        "legacyStage": mv.legacy_stage or None,
        "aliases": list(aliases),
        "approvals": [a.to_dict() for a in records.approvals(mv.tags)],
        "promotions": [
            p.to_dict() for p in sorted(records.promotions(mv.tags), key=lambda p: p.at)
        ],
        "audit": [a.to_dict() for a in records.audit_records(mv.tags)],
        "rejected": mv.tags.get(names.TAG_REJECTED),
    }


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _json_object(raw: str, what: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        warnings.append(f"{what} is not a JSON object; skipped")
        return None
    return data


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}
