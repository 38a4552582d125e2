"""A de-duplicating work queue of ModelDeployment keys, as controller-runtime has.

Watch events, registry webhooks and timers all say "look at this ModelDeployment again"; many
such nudges for one key collapse into one reconcile. A key is handed to one worker at a time: if
it is nudged while being reconciled, it is queued again when that reconcile ends. Delayed adds
(requeue after N seconds, backoff after a failure) keep only the earliest time per key.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cv = threading.Condition()
        self._ready: list[K] = []
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._closed = False

    def add(self, key: K) -> None:
        with self._cv:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._closed:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cv.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
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
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if self._closed:
                    return None
                wait = self._delayed[0][0] - self._clock() if self._delayed else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cv.wait(wait)

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._add_locked(key)

    def done(self, key: K) -> None:
        with self._cv:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def forget(self, key: K) -> None:
        """Drops pending delayed adds of a key (the object was deleted)."""
        with self._cv:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._ready) + len(self._due)


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
