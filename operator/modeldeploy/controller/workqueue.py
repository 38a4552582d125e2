"""A de-duplicating, two-level priority work queue of ModelDeployment keys, as controller-runtime
has (with its priority queue's rule that a key in both levels counts as high).

Watch events, registry webhooks and timers all say "look at this ModelDeployment again"; many
such nudges for one key collapse into one reconcile. A key is handed to one worker at a time: if
it is nudged while being reconciled, it is queued again when that reconcile ends, at the highest
priority it was nudged with. Delayed adds (requeue after N seconds, backoff after a failure)
keep only the earliest time per key.

Changes and events (a spec change, a child's event, a webhook) are HIGH; periodic checks (the
poll requeue, backoff retries, the initial listing after a start, a new leader's sweep) are
LOW. With one FIFO, at 1000 ModelDeployments a Deployment that became available waited behind
the whole periodic backlog (issue 14: 973 Deployments available, 56 ModelDeployments Healthy).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
HIGH, LOW = 0, 1
PRIORITY_NAMES = ("high", "low")  # the `priority` label of the queue metrics, by level


class WorkQueue(Generic[K]):
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_dequeue: Callable[[int, float], None] | None = None,
    ) -> None:
        """`on_dequeue(priority, waited)` is told, for each key handed out, how long it waited
        in the ready queue (the work-latency metric)."""
        self._clock = clock
        self._on_dequeue = on_dequeue
        self._cv = threading.Condition()
        # One FIFO per level. A key promoted from LOW to HIGH leaves a stale entry in the LOW
        # FIFO, skipped when reached: `_queued` holds each queued key's current level.
        self._ready: tuple[deque[K], deque[K]] = (deque(), deque())
        self._queued: dict[K, int] = {}
        self._since: dict[K, float] = {}
        self._processing: dict[K, int] = {}
        self._dirty: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._closed = False

    def add(self, key: K, priority: int = HIGH) -> None:
        with self._cv:
            self._add_locked(key, priority)

    def _add_locked(self, key: K, priority: int) -> None:
        if self._closed:
            return
        if key in self._processing:
            self._dirty[key] = min(priority, self._dirty.get(key, LOW))
            return
        current = self._queued.get(key)
        if current is not None and current <= priority:
            return
        if current is None:
            self._since[key] = self._clock()
        self._queued[key] = priority
        self._ready[priority].append(key)
        self._cv.notify()

    def add_after(self, key: K, delay: float) -> None:
        """A periodic check of `key` after `delay` seconds (LOW when it comes due)."""
        if delay <= 0:
            self.add(key, LOW)
            return
        with self._cv:
            due = self._clock() + delay
            if self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            self._seq += 1
            heapq.heappush(self._delayed, (due, self._seq, key))
            self._cv.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (the caller must call done(key)); None once closed or timed out."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cv:
            while True:
                self._promote_due()
                found = self._pop_ready()
                if found is not None:
                    return found
                if self._closed:
                    return None
                wait = self._delayed[0][0] - self._clock() if self._delayed else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cv.wait(wait)

    def _pop_ready(self) -> K | None:
        for level, fifo in enumerate(self._ready):
            while fifo:
                key = fifo.popleft()
                if self._queued.get(key) != level:
                    continue  # promoted to HIGH since, or handed out from there already
                del self._queued[key]
                waited = self._clock() - self._since.pop(key)
                self._processing[key] = level
                if self._on_dequeue is not None:
                    self._on_dequeue(level, waited)
                return key
        return None

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._add_locked(key, LOW)

    def done(self, key: K) -> None:
        with self._cv:
            self._processing.pop(key, None)
            priority = self._dirty.pop(key, None)
            if priority is not None:
                self._add_locked(key, priority)

    def put_back(self, key: K) -> None:
        """Hands a key just taken back, at the level it was taken from (a worker paused)."""
        with self._cv:
            level = self._processing.pop(key, LOW)
            dirty = self._dirty.pop(key, LOW)
            self._add_locked(key, min(level, dirty))

    def forget(self, key: K) -> None:
        """Drops pending delayed adds of a key (the object was deleted)."""
        with self._cv:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def depth(self, priority: int) -> int:
        """Keys ready at `priority` (not those waiting for a delayed add's time)."""
        with self._cv:
            return sum(1 for level in self._queued.values() if level == priority)

    def __len__(self) -> int:
        with self._cv:
            return len(self._queued) + len(self._due)


class Backoff:
    """Per-key exponential backoff for failed reconciles: base·2ⁿ, capped."""

    def __init__(self, base: float = 1.0, cap: float = 300.0) -> None:
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def failure(self, key: Hashable) -> float:
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        return float(min(self.cap, self.base * (2**n)))

    def success(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)
