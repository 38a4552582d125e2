"""Conditions and status: lastTransitionTime moves only on a flip; status survives the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.api import reasons as r
from modeldeploy.api.status import Condition, HistoryEntry, Status, iso, set_condition

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def only(conditions: tuple[Condition, ...], type_: str) -> Condition:
    (c,) = [c for c in conditions if c.type == type_]
    return c


def test_new_condition_is_appended_with_now_as_transition_time() -> None:
    conds = set_condition((), r.READY, False, r.ROLLOUT_IN_PROGRESS, "rolling", T0, 1)
    conds = set_condition(conds, r.REGISTRY_REACHABLE, True, r.REGISTRY_OK, "ok", T1, 1)
    assert [c.type for c in conds] == [r.READY, r.REGISTRY_REACHABLE]
    assert only(conds, r.READY).last_transition_time == "2025-03-01T12:00:00Z"
    assert only(conds, r.REGISTRY_REACHABLE).last_transition_time == "2025-03-01T12:05:00Z"
    assert only(conds, r.READY).status == "False"


def test_unchanged_status_keeps_transition_time_even_when_reason_and_message_change() -> None:
    conds = set_condition((), r.READY, False, r.ROLLOUT_IN_PROGRESS, "1/2 updated", T0, 1)
    conds = set_condition(conds, r.READY, False, r.PROGRESS_DEADLINE_EXCEEDED, "stalled", T1, 2)
    c = only(conds, r.READY)
    assert c.last_transition_time == iso(T0)
    assert (c.reason, c.message, c.observed_generation) == (
        r.PROGRESS_DEADLINE_EXCEEDED,
        "stalled",
        2,
    )


def test_status_flip_moves_transition_time() -> None:
    conds = set_condition((), r.READY, False, r.ROLLOUT_IN_PROGRESS, "rolling", T0)
    conds = set_condition(conds, r.READY, True, r.MODEL_SERVING, "serving", T1)
    c = only(conds, r.READY)
    assert (c.status, c.last_transition_time) == ("True", iso(T1))


def test_setting_one_condition_leaves_the_others_and_their_order_alone() -> None:
    conds = set_condition((), r.READY, True, r.MODEL_SERVING, "", T0)
    conds = set_condition(conds, r.COND_DEGRADED, False, r.AS_EXPECTED, "", T0)
    before = only(conds, r.COND_DEGRADED)
    conds = set_condition(conds, r.READY, False, r.ROLLOUT_IN_PROGRESS, "", T1)
    assert [c.type for c in conds] == [r.READY, r.COND_DEGRADED]
    assert only(conds, r.COND_DEGRADED) == before


def test_string_status_unknown_is_kept_verbatim() -> None:
    conds = set_condition((), r.READY, "Unknown", r.NOTHING_SERVING, "", T0)
    assert only(conds, r.READY).status == "Unknown"


def test_iso_is_utc_with_z_suffix_whatever_the_input_zone() -> None:
    from datetime import timezone

    cet = T0.astimezone(timezone(timedelta(hours=1)))
    assert iso(cet) == "2025-03-01T12:00:00Z"


def test_status_round_trips_through_its_dict_form() -> None:
    conds = set_condition((), r.READY, True, r.MODEL_SERVING, "v3 serving", T0, 4)
    conds = set_condition(conds, r.REGISTRY_REACHABLE, False, r.REGISTRY_UNREACHABLE, "x", T1)
    status = Status(
        phase=r.HEALTHY,
        selector="@champion",
        serving_version="3",
        resolved_version="4",
        model_uri="models:/fraud-detector/4",
        run_id="abc123",
        observed_generation=4,
        rejected_versions=("2",),
        conditions=conds,
        history=(
            HistoryEntry("2", iso(T0), r.OUTCOME_ROLLED_BACK, iso(T0), "ModelHighErrorRate"),
            HistoryEntry("3", iso(T0), r.OUTCOME_SUCCEEDED, iso(T1)),
            HistoryEntry("4", iso(T1), r.OUTCOME_PROGRESSING),
        ),
    )
    d = status.to_dict()
    assert Status.from_dict(d) == status
    assert d["conditions"][1]["lastTransitionTime"] == "2025-03-01T12:05:00Z"
    assert "observedGeneration" not in d["conditions"][1]
    assert d["history"][2] == {"version": "4", "startedAt": iso(T1), "outcome": "Progressing"}
    assert d["rejectedVersions"] == ["2"]


def test_empty_status_dict_omits_unset_scalars_and_reads_back_empty() -> None:
    assert Status().to_dict() == {"conditions": [], "history": []}
    assert Status.from_dict(None) == Status()
    assert Status.from_dict({}) == Status()
