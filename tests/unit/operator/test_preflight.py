"""Pre-flight checks: a version is rolled out only once the registry confirmed it can be served,
and a rollback goes only to a version the registry confirmed. Status read back from the API
server is untrusted input: history entries that do not name a servable version of this model
never become a target.

Stories are told as in test_planner (status round-trips through its stored form); the registry
is a fake `check` for `plan_checked`, and a fake `VersionSource` for `Preflight`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from modeldeploy.api import reasons as r
from modeldeploy.api.status import HistoryEntry, Status, iso_ms
from modeldeploy.registry.preflight import Preflight
from modeldeploy.registry.types import RegistryUnreachable, Unservable
from modeldeploy.rollout.planner import PREFLIGHT_RECHECK_SECONDS, Context, Plan, plan
from modeldeploy.rollout.preflight import MAX_ROUNDS, plan_checked
from modeldeploy.rollout.rollback import last_healthy
from modeldeploy.serving.trust import refusal
from tests.unit.operator.test_planner import (
    MODEL,
    T0,
    UNREACHABLE,
    cond,
    ctx,
    deployed_version,
    deployment,
    event_reasons,
    history,
    resolved,
    then,
)
from tests.unit.operator.test_rollback import alert, serving_v2_after_v1

GONE = Unservable(
    r.VERSION_NOT_IN_REGISTRY, "model 'fraud-detector' has no version in the registry"
)
NO_ARTIFACTS = Unservable(r.ARTIFACTS_MISSING, r.MSG_ARTIFACTS_MISSING)
OUTAGE = Unservable(r.REGISTRY_UNREACHABLE, "ConnectionError: connection refused")


class Registry:
    """The fake check: versions listed in `failures` fail with that answer; every question is
    recorded."""

    def __init__(self, **failures: Unservable) -> None:
        self.failures = {k.lstrip("v"): v for k, v in failures.items()}
        self.asked: list[str] = []
        self.fresh: list[str] = []  # asked with remembered answers refused

    def __call__(self, version: str, fresh: bool) -> Unservable | None:
        self.asked.append(version)
        if fresh:
            self.fresh.append(version)
        return self.failures.get(version)


def healthy_on_3(reg: Registry) -> tuple[Context, Plan]:
    c = ctx(resolved("3"))
    p = plan_checked(c, reg)
    c = then(c, p, deployment=deployment("3"))
    return c, plan_checked(c, reg)


def rollback_with(reg: Registry, status_history: tuple[HistoryEntry, ...] | None = None) -> Plan:
    """Serving v2 after v1 (history 1 Succeeded, 2 Succeeded), the stored history optionally
    replaced by `status_history` (as anyone with status access could), then v2's alert."""
    c, p = serving_v2_after_v1()
    c = then(c, p, alerts=(alert("2"),))
    if status_history is not None:
        c = replace(c, status=replace(c.status, history=status_history))
    return plan_checked(c, reg)


def entry(version: str, model: str | None = MODEL, run_id: str | None = None) -> HistoryEntry:
    started = iso_ms(T0)
    return HistoryEntry(version, started, r.OUTCOME_SUCCEEDED, started, None, run_id, model)


# --- a new version is checked before it is rolled out --------------------------------------


def test_first_rollout_is_checked_and_a_steady_state_asks_nothing() -> None:
    reg = Registry()
    c, p = healthy_on_3(reg)
    assert reg.asked == ["3"]  # only while the pods did not run it
    assert p.status.phase == r.HEALTHY
    plan_checked(then(c, p), reg)
    assert reg.asked == ["3"]


def test_version_with_missing_artifacts_is_not_rolled_out_and_the_current_one_keeps_serving() -> (
    None
):
    reg = Registry(v4=NO_ARTIFACTS)
    c, p = healthy_on_3(reg)
    c = then(c, p, resolution=resolved("4"))
    p = plan_checked(c, reg)
    assert deployed_version(p) == "3"
    assert (p.status.serving_version, p.status.resolved_version) == ("3", "4")
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]  # no rollout of 4 started
    assert p.rollouts_started == ()
    assert p.status.phase == r.DEGRADED
    assert cond(p, r.COND_DEGRADED) == ("True", r.ARTIFACTS_MISSING)
    msg = p.status.condition(r.COND_DEGRADED).message  # type: ignore[union-attr]
    assert "version 4 cannot be rolled out" in msg and "keeping version 3" in msg
    assert cond(p, r.READY) == ("True", r.MODEL_SERVING)
    assert ("Warning", r.EV_PREFLIGHT_FAILED) in event_reasons(p)
    assert p.requeue_after == PREFLIGHT_RECHECK_SECONDS  # retried
    assert p.new_version is None

    again = plan_checked(then(c, p), reg)  # still missing: no second Event, same status
    assert again.events == ()
    assert again.status.to_dict() == p.status.to_dict()
    assert again.requeue_after == PREFLIGHT_RECHECK_SECONDS

    del reg.failures["4"]  # the artifacts appear
    later = plan_checked(then(c, again), reg)
    assert deployed_version(later) == "4"
    assert history(later)[-1] == ("4", r.OUTCOME_PROGRESSING)
    assert cond(later, r.COND_DEGRADED) == ("False", r.AS_EXPECTED)


@pytest.mark.parametrize(
    "failure",
    [
        GONE,
        NO_ARTIFACTS,
        Unservable(r.MODEL_NOT_SERVABLE, "its python_model is cloudpickled"),
    ],
    ids=["not-in-registry", "artifacts-missing", "not-servable"],
)
def test_nothing_serving_and_the_version_fails_its_check_applies_nothing(
    failure: Unservable,
) -> None:
    reg = Registry(v3=failure)
    p = plan_checked(ctx(resolved("3")), reg)
    assert (p.apply, p.prune) == ((), ())
    assert p.status.phase == r.FAILED
    assert cond(p, r.READY) == ("False", failure.reason)
    assert cond(p, r.COND_DEGRADED) == ("True", failure.reason)
    assert ("Warning", r.EV_PREFLIGHT_FAILED) in event_reasons(p)
    assert p.status.history == () and p.rollouts_started == ()
    assert p.requeue_after == PREFLIGHT_RECHECK_SECONDS


def test_registry_outage_during_the_check_keeps_serving_and_says_registry_unreachable() -> None:
    reg = Registry(v4=OUTAGE)
    c, p = healthy_on_3(reg)
    c = then(c, p, resolution=resolved("4"))
    p = plan_checked(c, reg)
    assert deployed_version(p) == "3"
    assert p.status.phase == r.HEALTHY  # not a failed check: nothing is wrong with what serves
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)
    assert cond(p, r.COND_DEGRADED) == ("False", r.AS_EXPECTED)
    assert event_reasons(p) == [("Warning", r.EV_REGISTRY_UNREACHABLE)]
    assert history(p) == [("3", r.OUTCOME_SUCCEEDED)]
    assert p.requeue_after == PREFLIGHT_RECHECK_SECONDS

    p2 = plan_checked(then(c, p), reg)  # still down: said once
    assert p2.events == ()
    del reg.failures["4"]
    p3 = plan_checked(then(c, p2), reg)
    assert deployed_version(p3) == "4"
    assert cond(p3, r.REGISTRY_REACHABLE) == ("True", r.REGISTRY_OK)
    assert ("Normal", r.EV_REGISTRY_RECOVERED) in event_reasons(p3)


def test_outage_during_the_check_with_nothing_serving_waits_in_resolving() -> None:
    p = plan_checked(ctx(resolved("3")), Registry(v3=OUTAGE))
    assert p.apply == () and p.status.phase == r.RESOLVING
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)


# --- rollback targets are registry versions ------------------------------------------------


def test_rollback_to_a_version_deleted_from_the_registry_does_not_happen() -> None:
    reg = Registry(v1=GONE)
    p = rollback_with(reg)
    assert reg.asked == ["1"]
    assert p.rollback is None and p.status.rejected_versions == ()
    assert deployed_version(p) == "2"  # the current version keeps serving
    assert cond(p, r.COND_DEGRADED) == ("True", r.NO_HEALTHY_VERSION)
    msg = p.status.condition(r.COND_DEGRADED).message  # type: ignore[union-attr]
    assert "no earlier healthy version" in msg and "version 1" in msg
    assert ("Warning", r.EV_ALERT_FIRING) in event_reasons(p)
    assert p.status.phase == r.DEGRADED


def test_a_forged_history_entry_is_skipped_for_the_next_valid_version() -> None:
    reg = Registry(v99=GONE)
    forged = (entry("1"), entry("99", model=None), entry("2"))
    p = rollback_with(reg, forged)
    assert reg.asked == ["99", "1"]
    assert p.rollback is not None and (p.rollback.bad, p.rollback.good) == ("2", "1")
    assert deployed_version(p) == "1"


def test_a_forged_history_entry_alone_is_never_a_target() -> None:
    reg = Registry(v99=GONE)
    p = rollback_with(reg, (entry("99", model=None), entry("2")))
    assert p.rollback is None and deployed_version(p) == "2"
    assert cond(p, r.COND_DEGRADED) == ("True", r.NO_HEALTHY_VERSION)


@pytest.mark.parametrize(
    "garbage",
    [
        entry("../../etc"),
        entry(""),
        entry("1; rm -rf /"),
        entry("01"),
        entry("0"),
        entry("\uff11"),  # a full-width one: str.isdigit says yes, MLflow says no
        entry("1", model="someone-elses-model"),
        replace(entry("1"), outcome="Succeeded "),
    ],
    ids=["path", "empty", "shell", "leading-zero", "zero", "fullwidth", "other-model", "outcome"],
)
def test_garbage_history_entries_are_never_rollback_targets_nor_asked_about(
    garbage: HistoryEntry,
) -> None:
    reg = Registry()
    p = rollback_with(reg, (garbage, entry("2")))
    assert reg.asked == []
    assert p.rollback is None and deployed_version(p) == "2"
    assert cond(p, r.COND_DEGRADED) == ("True", r.NO_HEALTHY_VERSION)


def test_a_garbage_run_id_in_history_is_not_rendered() -> None:
    p = rollback_with(Registry(), (entry("1", run_id="x\n; evil " * 20), entry("2")))
    assert deployed_version(p) == "1"
    assert p.status.run_id is None


def test_rollback_target_unverifiable_during_an_outage_waits_for_the_registry() -> None:
    reg = Registry(v1=OUTAGE)
    c, p = serving_v2_after_v1()
    c = then(c, p, alerts=(alert("2"),))
    p = plan_checked(c, reg)
    assert p.rollback is None and deployed_version(p) == "2"
    assert p.status.rejected_versions == ()
    assert cond(p, r.COND_DEGRADED) == ("True", r.REGISTRY_UNREACHABLE)
    assert cond(p, r.REGISTRY_REACHABLE) == ("False", r.REGISTRY_UNREACHABLE)
    assert p.status.phase == r.DEGRADED
    del reg.failures["1"]  # the registry answers again
    p = plan_checked(then(c, p), reg)
    assert p.rollback is not None and deployed_version(p) == "1"


def test_every_rollback_candidate_is_checked_once_and_the_loop_is_bounded() -> None:
    versions = [str(v) for v in range(1, r.HISTORY_LIMIT + 1)]
    reg = Registry(**{f"v{v}": GONE for v in versions[:-1]})
    c, p = serving_v2_after_v1()
    newest = versions[-1]
    past = tuple(entry(v) for v in versions)
    status = replace(c.status, history=past, serving_version=newest)
    c = replace(c, status=status, deployment=deployment(newest), alerts=(alert(newest),))
    c = replace(c, resolution=resolved(newest))
    p = plan_checked(c, reg)
    assert reg.asked == versions[-2::-1]  # newest first, each once
    assert len(reg.asked) < MAX_ROUNDS
    assert p.rollback is None and deployed_version(p) == newest


def test_a_rejected_version_is_not_redeployed_when_its_rollback_target_is_gone() -> None:
    """Rolled back to v1; then the Deployment is deleted and v1 is gone from the registry. The
    selector still names the rejected v2: nothing is deployed rather than v2."""
    c, p = serving_v2_after_v1()
    c = then(c, p, alerts=(alert("2"),))
    p = plan(c)
    c = then(c, p, deployment=deployment("1", generation=4), alerts=())
    p = plan(c)
    assert p.status.phase == r.ROLLED_BACK
    reg = Registry(v1=GONE)
    p = plan_checked(then(c, p, deployment=None), reg)
    assert p.apply == ()
    assert p.status.rejected_versions == ("2",)
    assert "2" not in reg.asked


def test_rollback_while_resolving_fails_happens_when_the_target_passes_its_check() -> None:
    """The resolution's answer is a (remembered) failure, but the registry answers the target's
    check: the rollback happens, as before pre-flight checks."""
    c, p = serving_v2_after_v1()
    reg = Registry()
    p = plan_checked(then(c, p, resolution=UNREACHABLE, alerts=(alert("2"),)), reg)
    assert p.rollback is not None and deployed_version(p) == "1"
    assert reg.fresh == ["1"]


def test_a_rollback_target_is_checked_afresh_and_a_rollout_may_use_a_remembered_answer() -> None:
    reg = Registry(v1=GONE)
    rollback_with(reg)
    assert reg.fresh == ["1"]
    reg2 = Registry()
    healthy_on_3(reg2)
    assert (reg2.asked, reg2.fresh) == (["3"], [])


# --- last_healthy --------------------------------------------------------------------------


def test_last_healthy_skips_invalid_and_unservable_versions_but_returns_unverified_ones() -> None:
    h = (entry("1"), entry("2"), entry("x"), entry("3"))
    assert last_healthy(h, set(), MODEL, {"3": GONE}) == h[1]
    assert last_healthy(h, set(), MODEL, {"3": GONE, "2": NO_ARTIFACTS}) == h[0]
    assert last_healthy(h, set(), MODEL, {"3": OUTAGE}) == h[3]  # the caller waits for it
    assert last_healthy((entry("x"),), set(), MODEL) is None


# --- Preflight: the registry questions -----------------------------------------------------

SKOPS = {
    "flavors": {
        "python_function": {"loader_module": "mlflow.sklearn"},
        "sklearn": {"serialization_format": "skops"},
    }
}
PICKLE = {
    "flavors": {
        "python_function": {"loader_module": "mlflow.sklearn"},
        "sklearn": {"serialization_format": "cloudpickle"},
    }
}
NO_PYFUNC = {"flavors": {"sklearn": {"serialization_format": "skops"}}}


class Source:
    tracking_uri = "http://registry.test:5000"

    def __init__(self, mlmodels: dict[str, Any]) -> None:
        self.mlmodels = mlmodels  # version → MLmodel dict, or None: artifacts missing
        self.down = False
        self.calls = 0

    def version_exists(self, name: str, version: str) -> bool:
        self.calls += 1
        if self.down:
            raise RegistryUnreachable("connection refused")
        return version in self.mlmodels

    def read_mlmodel(self, name: str, version: str) -> str | None:
        m = self.mlmodels[version]
        return m if isinstance(m, str) else None if m is None else yaml.safe_dump(m)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def check(pf: Preflight, src: Source, version: str) -> Unservable | None:
    return pf.check(src, "fp", MODEL, version)


def test_preflight_answers_each_question() -> None:
    src = Source({"1": SKOPS, "2": None, "3": PICKLE, "4": NO_PYFUNC, "5": "- a\n- list\n"})
    pf = Preflight("never")
    assert check(pf, src, "1") is None
    assert check(pf, src, "9") == Unservable(
        r.VERSION_NOT_IN_REGISTRY, r.MSG_NOT_IN_REGISTRY.format(model=MODEL, version="9")
    )
    assert check(pf, src, "2") == NO_ARTIFACTS
    not_servable = check(pf, src, "3")
    assert not_servable is not None and not_servable.reason == r.MODEL_NOT_SERVABLE
    assert "unpickling runs code" in not_servable.message
    assert check(pf, src, "4") is not None
    assert check(pf, src, "5") == Unservable(r.MODEL_NOT_SERVABLE, r.MSG_MLMODEL_UNREADABLE)


def test_preflight_judges_under_the_trust_setting_serving_pods_get() -> None:
    src = Source({"3": PICKLE, "4": NO_PYFUNC})
    trusted = Preflight.for_serving_env((("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),))
    assert check(trusted, src, "3") is None  # models:/ URIs from the registry are trusted
    assert check(trusted, src, "4") is not None  # but nothing loads without a pyfunc flavor
    assert Preflight.for_serving_env(()).trust == "never"  # the serving runtime's default


def test_preflight_remembers_passes_longer_than_failures_and_never_outages() -> None:
    clock = Clock()
    src = Source({"1": SKOPS, "2": None})
    pf = Preflight("never", ok_ttl=60, failure_ttl=5, clock=clock)
    check(pf, src, "1")
    check(pf, src, "2")
    clock.t += 4
    check(pf, src, "1")
    check(pf, src, "2")
    assert src.calls == 2  # both remembered
    clock.t += 2  # the failure expired, the pass not yet
    src.mlmodels["2"] = SKOPS  # its artifacts appear
    assert check(pf, src, "2") is None
    assert check(pf, src, "1") is None
    assert src.calls == 3
    del src.mlmodels["1"]  # deleted: a fresh question sees it at once
    assert check(pf, src, "1") is None  # remembered
    assert pf.check(src, "fp", MODEL, "1", fresh=True) is not None
    src.mlmodels["1"] = SKOPS
    assert src.calls == 4

    src.down = True
    clock.t += 120
    assert check(pf, src, "1") == Unservable(r.REGISTRY_UNREACHABLE, "connection refused")
    src.down = False
    assert check(pf, src, "1") is None  # the outage was not remembered
    assert src.calls == 6


def test_loader_refusal_is_the_serving_runtimes_rule() -> None:
    assert refusal("models:/m/1", SKOPS, "never") is None
    assert refusal("models:/m/1", PICKLE, "registry") is None
    assert refusal("runs:/abc/model", PICKLE, "registry") is not None
    assert refusal("models:/m/1", PICKLE, "never") is not None
    assert refusal("models:/m/1", NO_PYFUNC, "always") is not None


def test_status_of_a_blocked_version_round_trips_unchanged() -> None:
    reg = Registry(v4=NO_ARTIFACTS)
    c, p = healthy_on_3(reg)
    c = then(c, p, resolution=resolved("4"))
    p = plan_checked(c, reg)
    stored = Status.from_dict(p.status.to_dict())
    assert stored == p.status
