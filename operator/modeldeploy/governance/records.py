"""Governance records kept as MLflow tags: approvals, promotions, the audit trail, the stage policy.

Pure: parsing and formatting only. The CLI (governance/actions.py) writes approvals, revocations
and promotions; the operator writes the audit entries of what it does (deploy, rollback) and
reads approvals to gate a rollout. Keeping them as tags on the model version puts them where
MLflow's UI, search and API already look, and makes every record travel with the version.

* An approval is the tag `modeldeploy.io/approved.<stage>` on the version, its value a JSON
  object {"by", "at", "note"}. Revoking deletes the tag. A value that does not parse is not an
  approval (fail closed).
* Every approval, revocation, promotion, deploy and rollback also adds one audit tag,
  `modeldeploy.io/audit.<time>.<action>.<nonce>`, that nothing ever rewrites: the current tags
  say what holds now, the audit tags say how it came to be. The time in the key sorts the trail
  in MLflow's UI; the nonce keeps two writers in the same millisecond apart.
* The stage policy (which aliases are stages, in order, and which stages need an approval) is
  the tag `modeldeploy.io/policy` on the registered model; without it the defaults hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from modeldeploy import names

DEFAULT_STAGES: Final = ("dev", "staging", "production")
DEFAULT_REQUIRE_APPROVAL: Final = ("production",)
# A stage is an MLflow alias: letters, digits, _ and -, not "latest" nor "v<digits>".
_STAGE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")

ACTION_APPROVE: Final = "approve"
ACTION_REVOKE: Final = "revoke"
ACTION_PROMOTE: Final = "promote"
ACTION_DEPLOY: Final = "deploy"
ACTION_ROLLBACK: Final = "rollback"
ACTIONS: Final = (ACTION_APPROVE, ACTION_REVOKE, ACTION_PROMOTE, ACTION_DEPLOY, ACTION_ROLLBACK)
OPERATOR_ACTOR: Final = names.FIELD_MANAGER


class RecordError(ValueError):
    """A policy, stage or record that does not follow the format; the message says which."""


def valid_stage(stage: str) -> bool:
    """MLflow reserves "latest" (in any case) and "v<digits>" as alias names."""
    return (
        _STAGE.fullmatch(stage) is not None
        and stage.lower() != "latest"
        and _VERSION_LIKE.fullmatch(stage) is None
    )


def check_stage(stage: str) -> str:
    if not valid_stage(stage):
        raise RecordError(
            f"{stage!r} is not a valid stage name (an MLflow alias: letters, digits, _ and -, "
            "not 'latest' or 'v<number>')"
        )
    return stage


def timestamp(now: datetime) -> str:
    """The time format of every record: UTC, milliseconds, ISO 8601."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# --- the stage policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    stages: tuple[str, ...] = DEFAULT_STAGES
    require_approval: tuple[str, ...] = DEFAULT_REQUIRE_APPROVAL
    explicit: bool = False  # read from the model's tag, not the defaults

    def __post_init__(self) -> None:
        if not self.stages:
            raise RecordError("a policy needs at least one stage")
        for stage in self.stages:
            check_stage(stage)
        if len(set(self.stages)) != len(self.stages):
            raise RecordError(f"stages repeat: {list(self.stages)}")
        unknown = [s for s in self.require_approval if s not in self.stages]
        if unknown:
            raise RecordError(f"requireApproval names stages that are not stages: {unknown}")

    def needs_approval(self, stage: str) -> bool:
        return stage in self.require_approval

    def to_json(self) -> str:
        return json.dumps(
            {"stages": list(self.stages), "requireApproval": list(self.require_approval)},
            separators=(",", ":"),
        )

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Policy:
        """The registered model's policy; the defaults when it has none. A malformed policy tag
        raises RecordError rather than silently falling back to looser defaults."""
        raw = tags.get(names.TAG_POLICY)
        if raw is None:
            return cls()
        data = _object(raw, names.TAG_POLICY)
        # Both keys, and only them: a misspelt key must not read as "no approval required".
        if set(data) != {"stages", "requireApproval"}:
            raise RecordError(
                f"tag {names.TAG_POLICY}: needs exactly the keys stages and requireApproval, "
                f"has {sorted(data)}"
            )
        stages, required = data["stages"], data["requireApproval"]
        if not (isinstance(stages, list) and _strings(stages)) or not (
            isinstance(required, list) and _strings(required, allow_empty=True)
        ):
            raise RecordError(
                f"tag {names.TAG_POLICY}: stages and requireApproval must be lists of names"
            )
        return cls(tuple(stages), tuple(required), explicit=True)


# --- approvals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    stage: str
    by: str
    at: str
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {"by": self.by, "at": self.at, "note": self.note},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "by": self.by, "at": self.at, "note": self.note}


def approval_key(stage: str) -> str:
    return names.TAG_APPROVED + check_stage(stage)


def approval(tags: Mapping[str, str], stage: str) -> Approval | None:
    """The version's approval for `stage`, or None. An unreadable value is no approval."""
    raw = tags.get(names.TAG_APPROVED + stage)
    if raw is None:
        return None
    try:
        data = _object(raw, names.TAG_APPROVED + stage)
    except RecordError:
        return None
    by, at = data.get("by"), data.get("at")
    if not isinstance(by, str) or not by or not isinstance(at, str) or not at:
        return None
    note = data.get("note")
    return Approval(stage, by, at, note if isinstance(note, str) else "")


def approvals(tags: Mapping[str, str]) -> list[Approval]:
    """Every readable approval on a version, by stage name."""
    stages = sorted(k[len(names.TAG_APPROVED) :] for k in tags if k.startswith(names.TAG_APPROVED))
    return [a for a in (approval(tags, s) for s in stages) if a is not None]


def is_approval_key(key: str) -> bool:
    return key.startswith(names.TAG_APPROVED)


# --- promotions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    stage: str
    by: str
    at: str
    source: str  # the stage (or "version") it was promoted from
    previous: str | None  # the version the stage's alias named before, if any

    def to_json(self) -> str:
        return json.dumps(
            {"by": self.by, "at": self.at, "from": self.source, "previous": self.previous},
            separators=(",", ":"),
        )

    def to_dict(self) -> dict[str, str | None]:
        return {
            "stage": self.stage,
            "by": self.by,
            "at": self.at,
            "from": self.source,
            "previous": self.previous,
        }


def promotion_key(stage: str) -> str:
    return names.TAG_PROMOTED + check_stage(stage)


def promotions(tags: Mapping[str, str]) -> list[Promotion]:
    out = []
    for key in sorted(k for k in tags if k.startswith(names.TAG_PROMOTED)):
        try:
            data = _object(tags[key], key)
        except RecordError:
            continue
        previous = data.get("previous")
        out.append(
            Promotion(
                stage=key[len(names.TAG_PROMOTED) :],
                by=str(data.get("by", "")),
                at=str(data.get("at", "")),
                source=str(data.get("from", "")),
                previous=str(previous) if previous is not None else None,
            )
        )
    return out


# --- the audit trail ----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """One thing that happened to a model version. `details` holds what the action needs:
    stage and note (approve, revoke), from and previous (promote), modeldeployment, previous,
    alert and reason (deploy, rollback)."""

    action: str
    at: str
    by: str
    details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"action": self.action, "at": self.at, "by": self.by, **self.details},
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=True,
        )

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "at": self.at, "by": self.by, **self.details}


def audit_key(record: AuditRecord, now: datetime, nonce: str) -> str:
    """`modeldeploy.io/audit.20261202T120000.123Z.approve.1a2b`: sorts by time."""
    if not re.fullmatch(r"[a-z0-9]{1,16}", nonce):
        raise RecordError(f"audit nonce {nonce!r} must be 1-16 lowercase letters or digits")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"
    return f"{names.TAG_AUDIT}{stamp}.{record.action}.{nonce}"


def audit_records(tags: Mapping[str, str]) -> list[AuditRecord]:
    """The version's audit trail, oldest first. Unreadable entries are skipped, not guessed."""
    out = []
    for key in sorted(k for k in tags if k.startswith(names.TAG_AUDIT)):
        try:
            data = _object(tags[key], key)
        except RecordError:
            continue
        action, at, by = data.pop("action", None), data.pop("at", None), data.pop("by", None)
        if not all(isinstance(v, str) and v for v in (action, at, by)):
            continue
        details = {str(k): str(v) for k, v in data.items() if v is not None}
        out.append(AuditRecord(str(action), str(at), str(by), details))
    return out


def is_operator_key(key: str) -> bool:
    """Tags the operator itself writes; their webhook events must not wake it (no loops)."""
    return key == names.TAG_REJECTED or key.startswith(names.TAG_AUDIT)


def _object(raw: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RecordError(f"tag {what}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"tag {what}: not a JSON object")
    return data


def _strings(value: Any, allow_empty: bool = False) -> bool:
    return (
        isinstance(value, list)
        and (allow_empty or bool(value))
        and all(isinstance(v, str) and v for v in value)
    )
