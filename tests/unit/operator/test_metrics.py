"""The operator's own metrics: one phase at 1, one version series per ModelDeployment."""

from __future__ import annotations

from modeldeploy import names
from modeldeploy.api import reasons as r
from modeldeploy.controller.metrics import OperatorMetrics


def phase_values(m: OperatorMetrics, namespace: str, name: str) -> dict[str, float | None]:
    return {
        p: m.registry.get_sample_value(
            names.OP_ROLLOUT_STATUS, {"namespace": namespace, "name": name, "phase": p}
        )
        for p in r.PHASES
    }


def version_series(m: OperatorMetrics) -> list[dict[str, str]]:
    return [
        dict(s.labels)
        for metric in m.registry.collect()
        if metric.name == names.OP_MODEL_VERSION_INFO
        for s in metric.samples
    ]


def test_set_phase_sets_exactly_one_phase_to_one() -> None:
    m = OperatorMetrics()
    m.set_phase("ml", "fraud", r.PROGRESSING)
    m.set_phase("ml", "fraud", r.HEALTHY)
    values = phase_values(m, "ml", "fraud")
    assert values[r.HEALTHY] == 1.0
    assert [p for p, v in values.items() if v != 0.0] == [r.HEALTHY]
    assert set(values.values()) == {0.0, 1.0}  # every phase has a series, so absent != 0


def test_phases_of_different_modeldeployments_are_independent() -> None:
    m = OperatorMetrics()
    m.set_phase("ml", "fraud", r.HEALTHY)
    m.set_phase("ml", "churn", r.DEGRADED)
    assert phase_values(m, "ml", "fraud")[r.HEALTHY] == 1.0
    assert phase_values(m, "ml", "churn")[r.DEGRADED] == 1.0
    assert phase_values(m, "ml", "fraud")[r.DEGRADED] == 0.0


def test_set_version_replaces_the_old_series() -> None:
    m = OperatorMetrics()
    m.set_version("ml", "fraud", "fraud-detector", "3")
    m.set_version("ml", "fraud", "fraud-detector", "4")
    assert version_series(m) == [
        {"namespace": "ml", "name": "fraud", "model": "fraud-detector", "version": "4"}
    ]
    sample = m.registry.get_sample_value(
        names.OP_MODEL_VERSION_INFO,
        {"namespace": "ml", "name": "fraud", "model": "fraud-detector", "version": "4"},
    )
    assert sample == 1.0


def test_set_version_none_removes_the_series() -> None:
    m = OperatorMetrics()
    m.set_version("ml", "fraud", "fraud-detector", "3")
    m.set_version("ml", "fraud", "fraud-detector", None)
    assert version_series(m) == []


def test_setting_the_same_version_twice_keeps_one_series() -> None:
    m = OperatorMetrics()
    m.set_version("ml", "fraud", "fraud-detector", "3")
    m.set_version("ml", "fraud", "fraud-detector", "3")
    assert len(version_series(m)) == 1


def test_forget_removes_phase_and_version_series_of_that_modeldeployment_only() -> None:
    m = OperatorMetrics()
    for name in ("fraud", "churn"):
        m.set_phase("ml", name, r.HEALTHY)
        m.set_version("ml", name, f"{name}-model", "3")
    m.forget("ml", "fraud")
    assert set(phase_values(m, "ml", "fraud").values()) == {None}
    assert phase_values(m, "ml", "churn")[r.HEALTHY] == 1.0
    assert [s["name"] for s in version_series(m)] == ["churn"]
    m.forget("ml", "never-seen")  # forgetting what was never set is harmless


def test_metric_names_are_the_shared_constants() -> None:
    m = OperatorMetrics()
    m.rollouts_started.labels("ml", "fraud").inc()
    m.rollouts_completed.labels("ml", "fraud", "Succeeded").inc()
    assert (
        m.registry.get_sample_value(names.OP_ROLLOUTS_STARTED, {"namespace": "ml", "name": "fraud"})
        == 1.0
    )
    assert (
        m.registry.get_sample_value(
            names.OP_ROLLOUTS_COMPLETED,
            {"namespace": "ml", "name": "fraud", "outcome": "Succeeded"},
        )
        == 1.0
    )


def rollback_series(m: OperatorMetrics) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["namespace"], s.labels["name"], s.labels["alert"]): s.value
        for metric in m.registry.collect()
        if metric.name == names.OP_ROLLBACKS.removesuffix("_total")
        for s in metric.samples
        if s.name == names.OP_ROLLBACKS
    }


def test_rollback_counters_exist_at_zero_for_the_alerts_that_can_roll_back() -> None:
    """increase() over a series born at 1 is 0: the first rollback would never show."""
    m = OperatorMetrics()
    m.watch_rollbacks("ml", "fraud", ["ModelHighErrorRate", "ModelHighLatency"])
    assert rollback_series(m) == {
        ("ml", "fraud", "ModelHighErrorRate"): 0.0,
        ("ml", "fraud", "ModelHighLatency"): 0.0,
    }
    m.rollbacks.labels("ml", "fraud", "ModelHighErrorRate").inc()
    m.watch_rollbacks("ml", "fraud", ["ModelHighErrorRate"])  # watching again keeps the count
    assert rollback_series(m)[("ml", "fraud", "ModelHighErrorRate")] == 1.0
    m.forget("ml", "fraud")
    assert rollback_series(m) == {}


def test_a_finished_rollout_records_when_it_ended_and_how_long_it_took() -> None:
    """The pipeline's deployment stage, reported as the pushed stages report theirs."""
    m = OperatorMetrics()
    m.rollout_finished("ml", "fraud", "Succeeded", "2026-01-01T10:00:00Z", "2026-01-01T10:00:42Z")
    labels = {"namespace": "ml", "name": "fraud", "outcome": "Succeeded"}
    get = m.registry.get_sample_value
    assert get(names.OP_ROLLOUT_LAST_DURATION, labels) == 42.0
    assert get(names.OP_ROLLOUT_LAST_COMPLETED, labels) == 1767261642.0
    assert get(names.OP_ROLLOUTS_COMPLETED, labels) == 1.0
    m.rollout_finished("ml", "fraud", "Failed", "not a time", None)  # end unknown: now
    failed = {**labels, "outcome": "Failed"}
    assert get(names.OP_ROLLOUT_LAST_COMPLETED, failed) > 1767261642.0
    assert get(names.OP_ROLLOUT_LAST_DURATION, failed) is None
    m.forget("ml", "fraud")
    assert get(names.OP_ROLLOUT_LAST_DURATION, labels) is None
    assert get(names.OP_ROLLOUT_LAST_COMPLETED, failed) is None
