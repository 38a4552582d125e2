"""approve, revoke, promote and the policy against the in-memory MLflow fake: exactly the expected
tags and alias are written, and a refusal writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from modeldeploy import names
from modeldeploy.governance import actions, records
from modeldeploy.governance.actions import (
    MlflowRegistry,
    NotFound,
    Refused,
    Unreachable,
    UsageError,
    Who,
)
from tests.unit.governance.fakes import FakeMlflow

NOW = datetime(2026, 12, 2, 12, 0, 0, 123000, tzinfo=UTC)
WHO = Who("alice", NOW, "ab12")
AUDIT = f"{names.TAG_AUDIT}20261202T120000.123Z"


@pytest.fixture
def fake() -> FakeMlflow:
    f = FakeMlflow()
    f.add_model("fraud", versions=3)
    return f


@pytest.fixture
def reg(fake: FakeMlflow) -> MlflowRegistry:
    return MlflowRegistry(fake, "http://registry.test")


def test_approve_writes_the_approval_and_one_audit_tag(fake: FakeMlflow, reg: MlflowRegistry):
    done = actions.approve(reg, "fraud", "2", "production", "looks good", WHO)

    approval = {"by": "alice", "at": "2026-12-02T12:00:00.123Z", "note": "looks good"}
    audit = {**approval, "action": "approve", "stage": "production"}
    assert fake.writes == [
        ("set_model_version_tag", "fraud", "2", "modeldeploy.io/approved.production", _j(approval)),
        ("set_model_version_tag", "fraud", "2", f"{AUDIT}.approve.ab12", _j(audit, True)),
    ]
    assert done.changed and done.version == "2" and done.stage == "production"
    assert done.to_dict()["record"] == {"stage": "production", **approval}
    assert done.to_dict()["audit"]["key"] == f"{AUDIT}.approve.ab12"


def test_approving_again_replaces_the_approval(fake: FakeMlflow, reg: MlflowRegistry):
    actions.approve(reg, "fraud", "2", "production", "", WHO)
    later = Who("bob", NOW.replace(minute=5), "cd34")
    actions.approve(reg, "fraud", "2", "production", "again", later)

    tags = fake.tags("fraud", "2")
    approval = records.approval(tags, "production")
    assert approval is not None and (approval.by, approval.note) == ("bob", "again")
    assert [r.by for r in records.audit_records(tags)] == ["alice", "bob"]


def test_revoke_deletes_the_approval_and_adds_an_audit_tag(fake: FakeMlflow, reg: MlflowRegistry):
    actions.approve(reg, "fraud", "1", "production", "", WHO)
    fake.writes.clear()

    done = actions.revoke(reg, "fraud", "1", "production", "bad data", Who("bob", NOW, "ef56"))

    assert fake.writes[0] == (
        "delete_model_version_tag",
        "fraud",
        "1",
        "modeldeploy.io/approved.production",
    )
    assert fake.writes[1][3] == f"{AUDIT}.revoke.ef56"
    assert json.loads(fake.writes[1][4]) == {
        "action": "revoke",
        "at": "2026-12-02T12:00:00.123Z",
        "by": "bob",
        "note": "bad data",
        "stage": "production",
    }
    assert len(fake.writes) == 2
    assert done.record is not None and done.record["by"] == "alice"  # what was revoked


def test_revoke_without_an_approval_is_not_found_and_writes_nothing(
    fake: FakeMlflow, reg: MlflowRegistry
):
    with pytest.raises(NotFound, match=r"version 1 has no approval for stage 'production'"):
        actions.revoke(reg, "fraud", "1", "production", "", WHO)
    assert fake.writes == []


def test_promote_moves_the_alias_and_records_who_and_from_where(
    fake: FakeMlflow, reg: MlflowRegistry
):
    fake.set_registered_model_alias("fraud", "staging", "3")
    fake.set_registered_model_alias("fraud", "production", "2")
    actions.approve(reg, "fraud", "3", "production", "", WHO)
    fake.writes.clear()

    done = actions.promote(reg, "fraud", "production", Who("bob", NOW, "9f9f"), source="staging")

    promotion = {"by": "bob", "at": "2026-12-02T12:00:00.123Z", "from": "staging", "previous": "2"}
    audit = {**promotion, "action": "promote", "stage": "production"}
    assert fake.writes == [
        ("set_registered_model_alias", "fraud", "production", "3"),
        (
            "set_model_version_tag",
            "fraud",
            "3",
            "modeldeploy.io/promoted.production",
            _j(promotion),
        ),
        ("set_model_version_tag", "fraud", "3", f"{AUDIT}.promote.9f9f", _j(audit, True)),
    ]
    assert done.changed and "(was version 2)" in done.message


def test_promote_a_version_to_a_stage_without_approval_rule(fake: FakeMlflow, reg: MlflowRegistry):
    done = actions.promote(reg, "fraud", "staging", WHO, version="2")

    assert fake.aliases("fraud") == {"staging": "2"}
    promoted = records.promotions(fake.tags("fraud", "2"))
    assert [(p.stage, p.source, p.previous) for p in promoted] == [("staging", "version", None)]
    assert json.loads(fake.writes[-1][4])["from"] == "version"
    assert "previous" not in json.loads(fake.writes[-1][4])  # nothing was there before
    assert done.to_dict()["record"]["previous"] is None


def test_promote_without_the_required_approval_is_refused_and_writes_nothing(
    fake: FakeMlflow, reg: MlflowRegistry
):
    fake.set_registered_model_alias("fraud", "staging", "3")
    fake.writes.clear()
    before = fake.snapshot()

    with pytest.raises(Refused, match=r"version 3 has no approval for stage 'production'"):
        actions.promote(reg, "fraud", "production", WHO, source="staging")

    assert fake.writes == []
    assert fake.snapshot() == before


def test_an_approval_for_another_stage_does_not_count(fake: FakeMlflow, reg: MlflowRegistry):
    actions.approve(reg, "fraud", "3", "staging", "", WHO)
    fake.writes.clear()
    with pytest.raises(Refused):
        actions.promote(reg, "fraud", "production", WHO, version="3")
    assert fake.writes == []


def test_an_unreadable_approval_does_not_count(fake: FakeMlflow, reg: MlflowRegistry):
    fake.set_model_version_tag("fraud", "3", "modeldeploy.io/approved.production", "yes")
    fake.writes.clear()
    with pytest.raises(Refused):
        actions.promote(reg, "fraud", "production", WHO, version="3")
    assert fake.writes == []


def test_promoting_to_the_stage_that_already_names_the_version_is_a_no_op(
    fake: FakeMlflow, reg: MlflowRegistry
):
    fake.set_registered_model_alias("fraud", "staging", "2")
    fake.set_registered_model_alias("fraud", "production", "2")
    fake.writes.clear()

    done = actions.promote(reg, "fraud", "production", WHO, source="staging")

    assert not done.changed and "already @production" in done.message
    assert done.to_dict()["record"] is None and done.to_dict()["audit"] is None
    assert fake.writes == []


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda r: actions.approve(r, "nope", "1", "production", "", WHO), "model 'nope'"),
        (lambda r: actions.approve(r, "fraud", "9", "production", "", WHO), "version 9"),
        (lambda r: actions.approve(r, "fraud", "x", "production", "", WHO), "version 'x'"),
        (lambda r: actions.approve(r, "fraud", "1", "prod", "", WHO), "unknown stage 'prod'"),
        (lambda r: actions.revoke(r, "fraud", "1", "qa", "", WHO), "unknown stage 'qa'"),
        (lambda r: actions.promote(r, "fraud", "prod", WHO, version="1"), "unknown stage 'prod'"),
        (lambda r: actions.promote(r, "fraud", "staging", WHO, source="x"), "unknown stage 'x'"),
        (lambda r: actions.promote(r, "fraud", "staging", WHO, source="dev"), "no alias @dev"),
        (lambda r: actions.promote(r, "fraud", "staging", WHO, version="7"), "version 7"),
    ],
)
def test_unknown_names_are_not_found_named_and_write_nothing(
    fake: FakeMlflow, reg: MlflowRegistry, call, named: str
):
    with pytest.raises(NotFound, match=named.replace("(", r"\(")):
        call(reg)
    assert fake.writes == []


def test_an_overlong_note_is_a_usage_error(fake: FakeMlflow, reg: MlflowRegistry):
    with pytest.raises(UsageError, match="at most 2000"):
        actions.approve(reg, "fraud", "1", "production", "x" * 2001, WHO)
    assert fake.writes == []


def test_promote_needs_exactly_one_origin(reg: MlflowRegistry):
    with pytest.raises(UsageError):
        actions.promote(reg, "fraud", "staging", WHO)
    with pytest.raises(UsageError):
        actions.promote(reg, "fraud", "staging", WHO, source="dev", version="1")


def test_an_unreachable_registry_is_unreachable(fake: FakeMlflow, reg: MlflowRegistry):
    fake.down = True
    with pytest.raises(Unreachable, match=r"registry at http://registry\.test"):
        actions.approve(reg, "fraud", "1", "production", "", WHO)


# --- the policy ---------------------------------------------------------------------------


def test_a_model_without_a_policy_tag_has_the_defaults(reg: MlflowRegistry):
    shown = actions.show_policy(reg, "fraud").to_dict()
    assert shown == {
        "model": "fraud",
        "stages": ["dev", "staging", "production"],
        "requireApproval": ["production"],
        "explicit": False,
        "changed": False,
        "message": "",
    }


def test_set_policy_writes_the_tag_and_keeps_fields_not_given(
    fake: FakeMlflow, reg: MlflowRegistry
):
    actions.set_policy(reg, "fraud", ("dev", "qa", "live"), ("live",))
    done = actions.set_policy(reg, "fraud", None, ("qa", "live"))

    assert done.changed
    tag = fake.models["fraud"]["tags"][names.TAG_POLICY]
    assert json.loads(tag) == {"stages": ["dev", "qa", "live"], "requireApproval": ["qa", "live"]}
    assert actions.show_policy(reg, "fraud").policy.explicit


def test_setting_the_same_policy_writes_nothing(fake: FakeMlflow, reg: MlflowRegistry):
    actions.set_policy(reg, "fraud", ("a", "b"), ())
    fake.writes.clear()
    done = actions.set_policy(reg, "fraud", ("a", "b"), None)
    assert not done.changed and fake.writes == []


@pytest.mark.parametrize(
    ("stages", "required", "error"),
    [
        (("dev", "latest"), (), "not a valid stage"),
        (("dev", "v2"), (), "not a valid stage"),
        (("dev", "dev"), (), "repeat"),
        ((), (), "at least one stage"),
        (("dev",), ("prod",), "not stages"),
        (("dev", "qa"), None, "not stages"),  # keeps requireApproval [production]
    ],
)
def test_an_invalid_policy_is_a_usage_error_and_writes_nothing(
    fake: FakeMlflow, reg: MlflowRegistry, stages, required, error: str
):
    with pytest.raises(UsageError, match=error):
        actions.set_policy(reg, "fraud", stages, required)
    assert fake.writes == []


def test_custom_stages_drive_promotion(fake: FakeMlflow, reg: MlflowRegistry):
    actions.set_policy(reg, "fraud", ("qa", "live"), ("live",))
    actions.promote(reg, "fraud", "qa", WHO, version="1")
    with pytest.raises(Refused):
        actions.promote(reg, "fraud", "live", WHO, source="qa")
    with pytest.raises(NotFound, match="unknown stage 'production'"):
        actions.approve(reg, "fraud", "1", "production", "", WHO)
    actions.approve(reg, "fraud", "1", "live", "", WHO)
    actions.promote(reg, "fraud", "live", WHO, source="qa")
    assert fake.aliases("fraud") == {"qa": "1", "live": "1"}


def test_a_malformed_policy_refuses_every_action_until_it_is_set(
    fake: FakeMlflow, reg: MlflowRegistry
):
    fake.models["fraud"]["tags"][names.TAG_POLICY] = "{not json"
    for call in (
        lambda: actions.approve(reg, "fraud", "1", "production", "", WHO),
        lambda: actions.promote(reg, "fraud", "staging", WHO, version="1"),
        lambda: actions.show_policy(reg, "fraud"),
    ):
        with pytest.raises(Refused, match="modeldeploy policy fraud"):
            call()
    assert fake.writes == []
    actions.set_policy(reg, "fraud", ("dev", "production"), None)
    actions.promote(reg, "fraud", "dev", WHO, version="1")


def _j(value: dict[str, object], sort: bool = False) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort)
