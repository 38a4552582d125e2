"""The worker pool and the kopf handlers' echo filter, with in-memory fakes: a paused pool (a
standby) reconciles nothing and loses nothing; a reconcile cut short by a lost lease or a
status conflict is queued again without backoff; the requeue delay is the plan's, shortened
(never lengthened) by the registry backoff; the operator's own status writes wake nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modeldeploy.controller.handlers import needs_reconcile
from modeldeploy.controller.kube import Conflict, NotLeader
from modeldeploy.controller.workers import WorkerPool, next_delay
from modeldeploy.controller.workqueue import Backoff, WorkQueue
from modeldeploy.rollout.rollback import ALLOW_VERSION_ANNOTATION

Key = tuple[str, str]
A, B = ("ml", "a"), ("ml", "b")


@dataclass(frozen=True)
class Result:
    requeue_after: float | None
    registry_failed: bool = False


class Recorder:
    def __init__(self, answer: Callable[[Key], Result] = lambda key: Result(None)) -> None:
        self.answer = answer
        self.keys: list[Key] = []
        self.lock = threading.Lock()

    def __call__(self, key: Key) -> Result:
        with self.lock:
            self.keys.append(key)
        return self.answer(key)


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.01)


@pytest.fixture
def pool() -> Iterator[tuple[WorkerPool, WorkQueue[Key], Recorder]]:
    queue: WorkQueue[Key] = WorkQueue()
    rec = Recorder()
    p = WorkerPool(queue, rec, count=2)
    p.start()
    yield p, queue, rec
    p.close()
    p.join(5)
    assert not any(t.is_alive() for t in p._threads)


def test_a_paused_pool_reconciles_nothing_and_keeps_every_nudge(pool) -> None:
    p, queue, rec = pool
    queue.add(A)
    queue.add(B)
    queue.add(A)
    time.sleep(0.3)
    assert rec.keys == []
    p.resume()
    wait_until(lambda: len(rec.keys) == 2)
    assert sorted(rec.keys) == [A, B]  # once each: nudges collapse
    time.sleep(0.1)
    assert len(rec.keys) == 2


def test_pausing_stops_the_next_reconcile(pool) -> None:
    p, queue, rec = pool
    p.resume()
    queue.add(A)
    wait_until(lambda: rec.keys == [A])
    p.pause()
    time.sleep(0.6)  # a worker already waiting in get() must hand its key back, not run it
    queue.add(B)
    time.sleep(0.3)
    assert rec.keys == [A]
    p.resume()
    wait_until(lambda: rec.keys == [A, B])


@pytest.mark.parametrize(
    "interruption",
    [
        pytest.param(NotLeader("lost"), id="lease-lost"),
        pytest.param(Conflict("changed since read"), id="status-conflict"),
    ],
)
def test_a_reconcile_cut_short_by_a_lost_lease_or_a_conflict_is_queued_again_without_backoff(
    interruption: Exception,
) -> None:
    queue: WorkQueue[Key] = WorkQueue()
    calls: list[Key] = []

    def reconcile(key: Key) -> Result:
        calls.append(key)
        if len(calls) == 1:
            raise interruption
        return Result(None)

    p = WorkerPool(queue, reconcile, count=1)
    p.start()
    try:
        p.resume()
        queue.add(A)
        wait_until(lambda: len(calls) == 2, timeout=5)
        assert p.backoff._failures == {}
    finally:
        p.close()
        p.join(5)


def test_a_failing_reconcile_backs_off_and_is_retried() -> None:
    queue: WorkQueue[Key] = WorkQueue()
    calls: list[float] = []

    def reconcile(key: Key) -> Result:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("boom")
        return Result(None)

    p = WorkerPool(queue, reconcile, count=1, backoff=Backoff(base=0.2, cap=1.0))
    p.start()
    try:
        p.resume()
        queue.add(A)
        wait_until(lambda: len(calls) == 2, timeout=5)
        assert calls[1] - calls[0] >= 0.2  # waited for its backoff (a lower bound)
    finally:
        p.close()
        p.join(5)


def test_the_requeue_delay_is_the_plans_shortened_by_registry_backoff() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert next_delay(Result(30.0), backoff, A) == 30.0
    assert next_delay(Result(None), backoff, A) is None
    assert next_delay(Result(30.0, registry_failed=True), backoff, A) == 1.0
    assert next_delay(Result(30.0, registry_failed=True), backoff, A) == 2.0
    assert next_delay(Result(1.5, registry_failed=True), backoff, A) == 1.5  # never later
    assert next_delay(Result(30.0), backoff, A) == 30.0  # a success resets the backoff
    assert next_delay(Result(30.0, registry_failed=True), backoff, A) == 1.0


def body(
    generation: int, observed: int | None, allow: str | None = None, handled: str | None = None
) -> dict[str, Any]:
    annotations = {ALLOW_VERSION_ANNOTATION: allow} if allow else {}
    status: dict[str, Any] = {} if observed is None else {"observedGeneration": observed}
    if handled:
        status["allowVersionHandled"] = handled
    return {"metadata": {"generation": generation, "annotations": annotations}, "status": status}


@pytest.mark.parametrize(
    ("type_", "obj", "expected"),
    [
        pytest.param("MODIFIED", body(3, 3), False, id="own-status-write"),
        pytest.param("MODIFIED", body(4, 3), True, id="spec-changed"),
        pytest.param("MODIFIED", body(1, None), True, id="no-status-yet"),
        pytest.param("ADDED", body(3, 3), True, id="added"),
        pytest.param(None, body(3, 3), True, id="initial-listing"),
        pytest.param("MODIFIED", body(3, 3, allow="4"), True, id="allow-version-set"),
        pytest.param("MODIFIED", body(3, 3, allow="4", handled="4"), False, id="allow-handled"),
        pytest.param("MODIFIED", body(3, 3, allow="5", handled="4"), True, id="allow-changed"),
    ],
)
def test_the_echo_filter_wakes_only_for_what_needs_a_reconcile(
    type_: str | None, obj: dict[str, Any], expected: bool
) -> None:
    assert needs_reconcile(type_, obj) is expected


def test_every_kind_of_child_is_watched_and_nothing_else_wakes_a_reconcile() -> None:
    """A child changed or deleted by hand is repaired within seconds only if its kind is
    watched (a foundation bug: the Service and monitoring objects were not)."""
    import kopf

    from modeldeploy import names
    from modeldeploy.controller import handlers
    from modeldeploy.render.objects import MANAGED_BY

    watched = {
        (h.fn.__name__, h.selector.group, h.selector.any_name): h
        for h in kopf.get_default_registry()._watching._handlers
        if h.fn.__module__ == handlers.__name__
    }
    children = {(g, n) for fn, g, n in watched if fn == "child_event"}
    assert children == {
        ("apps", "deployments"),
        ("", "services"),
        ("monitoring.coreos.com", "servicemonitors"),
        ("monitoring.coreos.com", "prometheusrules"),
    }
    for (fn, _, _), h in watched.items():
        if fn == "child_event":
            assert dict(h.labels or {}) == {names.LABEL_MANAGED_BY: MANAGED_BY}
