"""Best-effort work off the reconcile's path (controller/background.py): done in order by its
own thread, never blocking the caller; inline before it is started; dropped and counted when its
queue is full; drained on stop; a failing item does not stop the ones after it. And the
reconciler's use of it: a finished rollout's audit entry does not hold the reconcile."""

from __future__ import annotations

import threading

from modeldeploy.controller.background import Background
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import OperatorConfig, Reconciler
from modeldeploy.governance import records
from modeldeploy.registry.cache import ResolutionCache
from tests.unit.operator.fakes import FakeKube, FakeRegistry

NS, NAME, MODEL = "ml", "fraud", "fraud-detector"


def test_work_is_done_in_order_by_its_thread_and_drained_on_stop() -> None:
    done: list[int] = []
    gate = threading.Event()
    bg = Background("t")
    bg.start()
    bg.submit("wait", lambda: gate.wait(10) and None)
    for i in range(3):
        bg.submit(f"item {i}", lambda i=i: done.append(i))  # type: ignore[misc]
    assert done == []  # the caller did not wait
    gate.set()
    bg.stop(timeout=10)
    assert done == [0, 1, 2]


def test_before_it_is_started_work_is_done_inline() -> None:
    done: list[str] = []
    Background("t").submit("x", lambda: done.append("x"))
    assert done == ["x"]


def test_a_full_queue_drops_new_work_and_counts_it_and_a_failure_stops_nothing() -> None:
    dropped: list[int] = []
    gate = threading.Event()
    done: list[str] = []
    taken = threading.Event()
    bg = Background("t", capacity=2, on_drop=lambda: dropped.append(1))
    bg.start()

    def busy() -> None:
        taken.set()
        gate.wait(10)

    def boom() -> None:
        raise RuntimeError("registry down")

    bg.submit("busy", busy)
    assert taken.wait(10)  # the thread is busy; the queue holds two more
    bg.submit("boom", boom)
    bg.submit("a", lambda: done.append("a"))
    bg.submit("b", lambda: done.append("b"))
    assert len(dropped) == 1
    gate.set()
    bg.stop(timeout=10)
    assert done == ["a"]  # done after the failed one; "b" was dropped


def test_a_finished_rollout_is_recorded_in_the_registry_without_holding_the_reconcile() -> None:
    kube = FakeKube()
    registry = FakeRegistry()
    registry.versions[MODEL] = {"1"}
    registry.aliases[(MODEL, "champion")] = "1"
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    gate = threading.Event()
    bg = Background("registry-audit")
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        OperatorConfig(
            default_tracking_uri="http://registry.test:5000",
            serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),
        ),
        ResolutionCache(),
        OperatorMetrics(),
        client_factory=registry.factory,  # type: ignore[arg-type]
        background=bg,
    )
    rec.reconcile((NS, NAME))
    kube.finish_rollout(NS, NAME)
    bg.start()
    bg.submit("a slow registry", lambda: gate.wait(10) and None)
    rec.reconcile((NS, NAME))
    assert kube.status(NS, NAME)["phase"] == "Healthy"

    def audit() -> list[str]:
        tags = registry.version_tags.get((MODEL, "1"), {})
        return [a.action for a in records.audit_records(tags)]

    assert audit() == []  # not written yet: the reconcile did not wait for it
    gate.set()
    bg.stop(timeout=10)
    assert audit() == [records.ACTION_DEPLOY]
