"""Approve, revoke, promote and the stage policy, as functions over a small registry interface.

Every action checks everything it needs (model, policy, stage, version, alias, approval) before
its first write, so a refusal or a typo writes nothing. The writes themselves are tags and an
alias on MLflow's own records (governance/records.py says which); MLflow has no transactions,
so a promotion writes the act first (the alias) and its records after: a crash in between
leaves the alias moved without its promotion tag, never a promotion recorded that did not
happen.

`Registry` is the few registry calls the CLI and lineage need. `MlflowRegistry` implements it
over an `mlflow.MlflowClient` (or anything with the same methods, as the unit tests' fake) and
turns MLflow's exceptions into ours: the registry said "no such thing" → NotFound, anything else
(connection refused, timeout, 5xx, credentials refused) → Unreachable.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from modeldeploy import names
from modeldeploy.governance import records
from modeldeploy.governance.records import AuditRecord, Policy, RecordError

# Exit codes of the governance commands (docs/governance.md). 2 is argparse's own.
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_UNREACHABLE: Final = 4
EXIT_INTERNAL: Final = 5  # an unexpected error: a bug of modeldeploy's, reported in one line

_NOT_FOUND_CODES: Final = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
# "[Errno 111] Connection refused", "Read timed out", "Failed to resolve 'host' (...)"
_CAUSE: Final = re.compile(
    r"(\[Errno -?\d+\][^\"')]*|Read timed out[^\"')]*|Failed to resolve[^\"(]*)"
)
MAX_NOTE: Final = 2000  # characters; the note is stored twice (approval and audit tag)


class GovernanceError(Exception):
    """An action that did not happen; `exit_code` is what the CLI exits with."""

    exit_code: int = EXIT_REFUSED


class Refused(GovernanceError):
    """The policy forbids it (an approval is missing, the policy tag cannot be read)."""

    exit_code = EXIT_REFUSED


class UsageError(GovernanceError):
    exit_code = EXIT_USAGE


class NotFound(GovernanceError):
    """The model, version, alias, stage, approval or ModelDeployment named does not exist."""

    exit_code = EXIT_NOT_FOUND


class Unreadable(GovernanceError):
    """A record is there but cannot be read (binary, a directory): lineage warns about it."""

    exit_code = EXIT_NOT_FOUND


class Unreachable(GovernanceError):
    """The registry or the cluster could not be asked, or refused our credentials."""

    exit_code = EXIT_UNREACHABLE


@dataclass(frozen=True)
class Model:
    name: str
    tags: Mapping[str, str]
    aliases: Mapping[str, str]  # alias → version


@dataclass(frozen=True)
class Version:
    model: str
    version: str
    tags: Mapping[str, str]
    run_id: str = ""
    source: str = ""
    created_at: str = ""
    legacy_stage: str = ""  # MLflow's deprecated stages: shown, never acted on
    description: str = ""
    model_id: str = ""  # MLflow 3's logged model


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    experiment_id: str
    status: str
    start_time: str
    end_time: str
    user: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]


class Registry(Protocol):
    uri: str

    def model(self, name: str) -> Model: ...
    def version(self, name: str, version: str) -> Version: ...
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...
    def delete_version_tag(self, name: str, version: str, key: str) -> None: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...
    def run(self, run_id: str) -> Run: ...
    def run_artifact(self, run_id: str, path: str) -> str | None: ...


@dataclass(frozen=True)
class Who:
    """Who acts, when, and the audit key's nonce (passed in so tests can fix all three)."""

    by: str
    now: datetime
    nonce: str

    @property
    def at(self) -> str:
        return records.timestamp(self.now)


@dataclass(frozen=True)
class Outcome:
    """What an approve, revoke or promote did; `record` is the approval or promotion written
    (for revoke: the approval removed), `audit` the audit entry added."""

    action: str
    model: str
    version: str
    stage: str
    changed: bool
    message: str
    record: Mapping[str, str | None] | None = None
    audit_key: str | None = None
    audit: AuditRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        audit = None if self.audit is None else {"key": self.audit_key, **self.audit.to_dict()}
        return {
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "stage": self.stage,
            "changed": self.changed,
            "message": self.message,
            "record": None if self.record is None else dict(self.record),
            "audit": audit,
        }


@dataclass(frozen=True)
class PolicyOutcome:
    model: str
    policy: Policy
    changed: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stages": list(self.policy.stages),
            "requireApproval": list(self.policy.require_approval),
            "explicit": self.policy.explicit,
            "changed": self.changed,
            "message": self.message,
        }


# --- the actions --------------------------------------------------------------------------


def approve(reg: Registry, model: str, version: str, stage: str, note: str, who: Who) -> Outcome:
    """Approves `version` for `stage`; approving again replaces the approval (new who, when,
    note) and adds another audit entry."""
    _check_note(note)
    m, _ = _model_and_stage(reg, model, stage)
    mv = _version(reg, m, version)
    approval = records.Approval(stage, who.by, who.at, note)
    audit = AuditRecord(records.ACTION_APPROVE, who.at, who.by, _details(stage=stage, note=note))
    key = _audit_key(audit, who)
    reg.set_version_tag(m.name, mv.version, records.approval_key(stage), approval.to_json())
    reg.set_version_tag(m.name, mv.version, key, audit.to_json())
    message = f"approved {m.name} version {mv.version} for {stage} (by {who.by})"
    return Outcome(
        records.ACTION_APPROVE, m.name, mv.version, stage, changed=True, message=message,
        record=approval.to_dict(), audit_key=key, audit=audit,
    )  # fmt: skip


def revoke(reg: Registry, model: str, version: str, stage: str, note: str, who: Who) -> Outcome:
    """Deletes the approval. No approval to revoke is NotFound: a script that revokes expects
    one to exist, and a silent success would hide a wrong version or stage."""
    _check_note(note)
    m = reg.model(model)
    mv = _version(reg, m, version)
    key = names.TAG_APPROVED + stage
    if not records.valid_stage(stage) or key not in mv.tags:
        # An approval for a stage the policy no longer lists can still be revoked; for any
        # other unknown stage, say which stages there are.
        _known_stage(m, _policy(m), stage)
        raise NotFound(
            f"model {m.name!r} version {mv.version} has no approval for stage {stage!r}; "
            "nothing to revoke"
        )
    old = records.approval(mv.tags, stage)
    audit = AuditRecord(records.ACTION_REVOKE, who.at, who.by, _details(stage=stage, note=note))
    audit_key = _audit_key(audit, who)
    reg.delete_version_tag(m.name, mv.version, key)
    reg.set_version_tag(m.name, mv.version, audit_key, audit.to_json())
    still = " (it still holds that stage's alias)" if m.aliases.get(stage) == mv.version else ""
    message = f"revoked the {stage} approval of {m.name} version {mv.version}{still}"
    return Outcome(
        records.ACTION_REVOKE, m.name, mv.version, stage, changed=True, message=message,
        record=None if old is None else old.to_dict(), audit_key=audit_key, audit=audit,
    )  # fmt: skip


def promote(
    reg: Registry,
    model: str,
    to: str,
    who: Who,
    *,
    source: str | None = None,
    version: str | None = None,
) -> Outcome:
    """Points the alias `to` at the version the alias `source` names (or at `version`).
    Refused when `to` requires an approval the version lacks; a no-op when the alias already
    names the version."""
    if (source is None) == (version is None):
        raise UsageError("promote needs exactly one of --from STAGE and --version N")
    m, policy = _model_and_stage(reg, model, to)
    if source is not None:
        _known_stage(m, policy, source)
        target = m.aliases.get(source)
        if target is None:
            raise NotFound(f"model {m.name!r} has no alias @{source}: stage {source} is empty")
        origin = source
    else:
        target, origin = check_version(m.name, str(version)), "version"
    mv = _version(reg, m, target)
    previous = m.aliases.get(to)
    if previous == mv.version:
        message = f"{m.name} version {mv.version} is already @{to}; nothing written"
        return Outcome(records.ACTION_PROMOTE, m.name, mv.version, to, False, message)
    if policy.needs_approval(to) and records.approval(mv.tags, to) is None:
        raise Refused(
            f"model {m.name!r} version {mv.version} has no approval for stage {to!r}, which "
            f"requires one (modeldeploy approve {m.name} {mv.version} --stage {to})"
        )
    promotion = records.Promotion(to, who.by, who.at, origin, previous)
    details = _details(stage=to, **{"from": origin, "previous": previous or ""})
    audit = AuditRecord(records.ACTION_PROMOTE, who.at, who.by, details)
    audit_key = _audit_key(audit, who)
    reg.set_alias(m.name, to, mv.version)
    reg.set_version_tag(m.name, mv.version, records.promotion_key(to), promotion.to_json())
    reg.set_version_tag(m.name, mv.version, audit_key, audit.to_json())
    was = f" (was version {previous})" if previous else ""
    origin_text = f" from {origin}" if source is not None else ""
    message = f"promoted {m.name} version {mv.version}{origin_text} to {to}{was}"
    return Outcome(
        records.ACTION_PROMOTE, m.name, mv.version, to, changed=True, message=message,
        record=promotion.to_dict(), audit_key=audit_key, audit=audit,
    )  # fmt: skip


def show_policy(reg: Registry, model: str) -> PolicyOutcome:
    m = reg.model(model)
    return PolicyOutcome(m.name, _policy(m))


def set_policy(
    reg: Registry,
    model: str,
    stages: tuple[str, ...] | None,
    require_approval: tuple[str, ...] | None,
) -> PolicyOutcome:
    """Sets the model's policy. A field not given keeps its current value (the defaults when
    the model has no policy, or one that cannot be read: setting a policy is how to fix it)."""
    m = reg.model(model)
    try:
        current = Policy.from_tags(m.tags)
    except RecordError:
        current = Policy()
    try:
        new = Policy(
            current.stages if stages is None else stages,
            current.require_approval if require_approval is None else require_approval,
            explicit=True,
        )
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    if m.tags.get(names.TAG_POLICY) == new.to_json():
        return PolicyOutcome(m.name, new, False, f"{m.name}: policy unchanged")
    reg.set_model_tag(m.name, names.TAG_POLICY, new.to_json())
    return PolicyOutcome(m.name, new, True, f"{m.name}: policy set")


# --- checks before the first write --------------------------------------------------------


def _policy(m: Model) -> Policy:
    try:
        return Policy.from_tags(m.tags)
    except RecordError as exc:
        raise Refused(
            f"model {m.name!r}: {exc}; fix it with `modeldeploy policy {m.name} --stages ...`"
        ) from None


def _known_stage(m: Model, policy: Policy, stage: str) -> None:
    if stage not in policy.stages:
        raise NotFound(
            f"unknown stage {stage!r} for model {m.name!r} (stages: {', '.join(policy.stages)})"
        )


def _check_note(note: str) -> None:
    if len(note) > MAX_NOTE:
        raise UsageError(f"--note is {len(note)} characters; at most {MAX_NOTE}")
    check_printable("--note", note)


def check_printable(what: str, text: str) -> None:
    """Records are printed one per line: a newline or another control character in one could
    forge the next (a fake approval line in `lineage`)."""
    if any(not ch.isprintable() for ch in text):
        raise UsageError(f"{what} must not contain newlines or other control characters")


def _model_and_stage(reg: Registry, model: str, stage: str) -> tuple[Model, Policy]:
    m = reg.model(model)
    policy = _policy(m)
    _known_stage(m, policy, stage)
    return m, policy


def check_version(model: str, version: str) -> str:
    """The version number as MLflow spells it; NotFound for anything that is not a number."""
    if not re.fullmatch(r"[0-9]{1,18}", version) or int(version) == 0:
        raise NotFound(f"model {model!r} has no version {version!r} (versions are numbers)")
    return str(int(version))


def _version(reg: Registry, m: Model, version: str) -> Version:
    return reg.version(m.name, check_version(m.name, version))


def _details(**values: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _audit_key(audit: AuditRecord, who: Who) -> str:
    try:
        return records.audit_key(audit, who.now, who.nonce)
    except RecordError as exc:
        raise UsageError(str(exc)) from None


# --- MLflow -------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass
class MlflowRegistry:
    """The registry interface over an `mlflow.MlflowClient` (tracking and registry URI the
    same). MLflow's objects are converted to ours here, once."""

    client: Any
    uri: str

    def model(self, name: str) -> Model:
        rm = self._call(lambda: self.client.get_registered_model(name), f"model {name!r}")
        return Model(str(rm.name), _strings(rm.tags), _strings(rm.aliases))

    def version(self, name: str, version: str) -> Version:
        what = f"version {version} of model {name!r}"
        mv = self._call(lambda: self.client.get_model_version(name, version), what)
        stage = str(mv.current_stage or "")
        return Version(
            model=str(mv.name),
            version=str(mv.version),
            tags=_strings(mv.tags),
            run_id=str(mv.run_id or ""),
            source=str(mv.source or ""),
            created_at=_ms(mv.creation_timestamp),
            legacy_stage="" if stage == "None" else stage,
            description=str(mv.description or ""),
            model_id=str(getattr(mv, "model_id", None) or ""),
        )

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        what = f"version {version} of model {name!r}"
        self._call(lambda: self.client.set_model_version_tag(name, version, key, value), what)

    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        what = f"tag {key!r} of version {version} of model {name!r}"
        self._call(lambda: self.client.delete_model_version_tag(name, version, key), what)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        what = f"version {version} of model {name!r}"
        self._call(lambda: self.client.set_registered_model_alias(name, alias, version), what)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(lambda: self.client.set_registered_model_tag(name, key, value), f"{name!r}")

    def run(self, run_id: str) -> Run:
        r = self._call(lambda: self.client.get_run(run_id), f"run {run_id!r}")
        info, data = r.info, r.data
        return Run(
            id=str(info.run_id),
            name=str(info.run_name or ""),
            experiment_id=str(info.experiment_id),
            status=str(info.status),
            start_time=_ms(info.start_time),
            end_time=_ms(info.end_time),
            user=str(info.user_id or ""),
            params=_strings(data.params),
            metrics={str(k): float(v) for k, v in (data.metrics or {}).items()},
            tags=_strings(data.tags),
        )

    def run_artifact(self, run_id: str, path: str) -> str | None:
        """The artifact's text, or None when the run has no such artifact."""
        with tempfile.TemporaryDirectory(prefix="modeldeploy-lineage-") as tmp:
            try:
                local = self._call(
                    lambda: self.client.download_artifacts(run_id, path, tmp),
                    f"artifact {path!r} of run {run_id!r}",
                )
            except NotFound:
                return None
            try:
                return Path(str(local)).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:  # a directory, binary content
                raise Unreadable(f"artifact {path!r} of run {run_id!r}: {exc}") from exc

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except GovernanceError:
            raise
        except Exception as exc:
            raise _translate(exc, what, self.uri) from exc


def _translate(exc: Exception, what: str, uri: str) -> GovernanceError:
    code = str(getattr(exc, "error_code", ""))
    if code in _NOT_FOUND_CODES or isinstance(exc, FileNotFoundError):
        return NotFound(f"{what} not found in the registry at {uri}")
    return Unreachable(f"registry at {uri}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    """The cause in a few words: MLflow wraps a refused connection in three layers of text."""
    text = str(exc).strip()
    cause = _CAUSE.search(text)
    if cause:
        return f"cannot connect: {cause.group(1).strip()}"
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value or {}).items()}


def _ms(value: Any) -> str:
    """MLflow's milliseconds since the epoch as a record time; "" when unset."""
    if not value:
        return ""
    return records.timestamp(datetime.fromtimestamp(int(value) / 1000, UTC))
