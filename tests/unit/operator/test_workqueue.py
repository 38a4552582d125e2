"""The de-duplicating work queue and per-key backoff."""

from __future__ import annotations

import threading

import pytest

from modeldeploy.controller.workqueue import HIGH, LOW, Backoff, WorkQueue

Key = tuple[str, str]
A: Key = ("ml", "fraud")
B: Key = ("ml", "churn")
SAFETY = 5.0  # how long a helper thread may take before the test gives up (not a measurement)


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def drain(q: WorkQueue[Key]) -> list[Key]:
    """Everything ready now, without waiting (each key marked done)."""
    out = []
    while (key := q.get(timeout=0)) is not None:
        out.append(key)
        q.done(key)
    return out


def test_repeated_adds_of_a_key_collapse_into_one_item() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    for key in (A, B, A, A, B):
        q.add(key)
    assert len(q) == 2
    assert drain(q) == [A, B]  # first-come order


def test_key_added_while_processing_is_requeued_after_done_not_handed_out_twice() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add(A)
    assert q.get(timeout=0) == A
    q.add(A)
    q.add(A)
    assert q.get(timeout=0) is None  # never two workers on one key
    q.done(A)
    assert q.get(timeout=0) == A
    q.done(A)
    assert q.get(timeout=0) is None  # the two nudges made one more reconcile, not two


def test_done_without_new_adds_does_not_requeue() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add(A)
    key = q.get(timeout=0)
    assert key is not None
    q.done(key)
    assert q.get(timeout=0) is None


def test_add_after_keeps_only_the_earliest_due_time() -> None:
    clock = FakeClock()
    q: WorkQueue[Key] = WorkQueue(clock)
    q.add_after(A, 10)
    q.add_after(A, 5)
    q.add_after(A, 20)  # later than what is pending: ignored
    assert len(q) == 1
    clock.now += 4.9
    assert q.get(timeout=0) is None
    clock.now += 0.1
    assert drain(q) == [A]
    clock.now += 100  # the superseded 10 s and the ignored 20 s entries do not fire later
    assert drain(q) == []


def test_add_after_with_no_delay_is_an_add() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add_after(A, 0)
    q.add_after(B, -1)
    assert drain(q) == [A, B]


def test_delayed_key_that_is_already_queued_is_not_handed_out_twice() -> None:
    clock = FakeClock()
    q: WorkQueue[Key] = WorkQueue(clock)
    q.add(A)
    q.add_after(A, 1)
    clock.now += 1
    assert drain(q) == [A]


def test_forget_drops_pending_delayed_adds() -> None:
    clock = FakeClock()
    q: WorkQueue[Key] = WorkQueue(clock)
    q.add_after(A, 5)
    q.add_after(B, 5)
    q.forget(A)
    clock.now += 5
    assert drain(q) == [B]


def test_get_with_timeout_returns_none_when_empty() -> None:
    q: WorkQueue[Key] = WorkQueue()  # the real clock: get() waits on a real condition variable
    assert q.get(timeout=0.01) is None
    assert q.get(timeout=0) is None


def test_get_wakes_for_a_key_added_from_another_thread() -> None:
    q: WorkQueue[Key] = WorkQueue()
    got: list[Key | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=SAFETY)))
    t.start()
    q.add(A)
    t.join(SAFETY)
    assert got == [A]


def test_close_wakes_blocked_getters_with_none_and_refuses_new_keys() -> None:
    q: WorkQueue[Key] = WorkQueue()
    results: list[Key | None] = []
    waiting = threading.Barrier(4)

    def worker() -> None:
        waiting.wait(SAFETY)
        results.append(q.get())  # no timeout: only close() can end this

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    waiting.wait(SAFETY)
    q.close()
    for t in threads:
        t.join(SAFETY)
    assert not any(t.is_alive() for t in threads)
    assert results == [None, None, None]
    q.add(A)
    assert q.get(timeout=0) is None


# --- backoff -------------------------------------------------------------------------------


def test_backoff_doubles_per_failure_and_caps() -> None:
    b = Backoff(base=1.0, cap=60.0)
    assert [b.failure(A) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_success_resets_only_that_key() -> None:
    b = Backoff(base=0.5, cap=300.0)
    for _ in range(3):
        b.failure(A)
        b.failure(B)
    b.success(A)
    assert b.failure(A) == 0.5
    assert b.failure(B) == 4.0


@pytest.mark.parametrize(("base", "cap"), [(1.0, 300.0), (2.0, 10.0)])
def test_backoff_never_exceeds_cap(base: float, cap: float) -> None:
    b = Backoff(base=base, cap=cap)
    assert max(b.failure(A) for _ in range(64)) == cap


C: Key = ("ml", "ranker")


def test_changes_and_events_are_worked_before_periodic_checks() -> None:
    """At 1000 ModelDeployments a Deployment that became available waited behind the whole
    periodic backlog (issue 14); now it goes first, and each level stays first-come."""
    clock = FakeClock()
    q: WorkQueue[Key] = WorkQueue(clock)
    q.add_after(A, 1)  # a poll requeue, due
    q.add(B, LOW)  # the initial listing after a start
    clock.now += 1
    q.add(C)  # a child's event
    assert drain(q) == [C, B, A]


def test_a_key_in_both_levels_counts_as_high_and_is_handed_out_once() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add(A, LOW)
    q.add(B, LOW)
    q.add(A, HIGH)
    q.add(A, LOW)  # a later periodic nudge does not demote it
    assert q.depth(HIGH) == 1 and q.depth(LOW) == 1
    assert drain(q) == [A, B]


def test_a_key_nudged_while_processing_is_queued_again_at_its_highest_nudge() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add(A, LOW)
    assert q.get(timeout=0) == A
    q.add(B, LOW)
    q.add(A, LOW)
    q.add(A, HIGH)
    assert q.get(timeout=0) == B  # A is still being worked: never two workers on one key
    q.done(A)
    q.done(B)
    assert q.depth(HIGH) == 1
    assert drain(q) == [A]


def test_a_key_put_back_keeps_its_level() -> None:
    q: WorkQueue[Key] = WorkQueue(FakeClock())
    q.add(A, LOW)
    assert q.get(timeout=0) == A
    q.put_back(A)
    assert (q.depth(HIGH), q.depth(LOW)) == (0, 1)


def test_each_key_handed_out_reports_its_level_and_how_long_it_waited() -> None:
    clock = FakeClock()
    seen: list[tuple[int, float]] = []
    q: WorkQueue[Key] = WorkQueue(
        clock, on_dequeue=lambda level, waited: seen.append((level, waited))
    )
    q.add(A, LOW)
    clock.now += 2
    q.add(A, HIGH)  # promoted: it has waited since its first add
    q.add(B)
    clock.now += 1
    drain(q)
    assert seen == [(HIGH, 3.0), (HIGH, 1.0)]
