"""The worker pool: plain threads draining the work queue through the reconciler.

Workers run the synchronous reconciler with the official client, so nothing blocks kopf's event
loop. They work only while the pool is resumed (this replica leads); paused, they leave keys in
the queue, where nudges keep collecting them for the next time this replica leads. A reconcile
cut short because the lease was lost (NotLeader) is not a failure: the key is queued again
without backoff. Neither is a status write refused because the ModelDeployment changed since it
was read (Conflict: someone edited it, or the stored copy lagged): the key is queued again at
once, and the retry reads it afresh (controller/children.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from modeldeploy.alerts.store import Key
from modeldeploy.controller.kube import Conflict, NotLeader
from modeldeploy.controller.workqueue import Backoff, WorkQueue

log = logging.getLogger("modeldeploy.workers")
GATE_POLL_SECONDS = 0.5  # how often a paused worker looks whether the pool is closing


class Result(Protocol):
    @property
    def requeue_after(self) -> float | None: ...
    @property
    def registry_failed(self) -> bool: ...


def next_delay(result: Result, backoff: Backoff, key: Key) -> float | None:
    """When to look at `key` again after a reconcile that returned `result`: its requeue delay,
    shortened by the registry backoff after a failed registry answer (never lengthened: a poll
    due sooner stays due sooner)."""
    if result.registry_failed:
        delay = backoff.failure(key)
    else:
        backoff.success(key)
        delay = 0.0
    if result.requeue_after is None:
        return None
    return min(delay, result.requeue_after) if delay else result.requeue_after


class WorkerPool:
    def __init__(
        self,
        queue: WorkQueue[Key],
        reconcile: Callable[[Key], Result],
        count: int,
        backoff: Backoff | None = None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        """`active` is asked before each reconcile besides the pause gate: the lease can run out
        by itself (leader.py) a moment before the elector thread pauses the pool."""
        self.queue, self.reconcile, self.count = queue, reconcile, count
        self._active = active
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._gate = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def resume(self) -> None:
        self._gate.set()

    def pause(self) -> None:
        self._gate.clear()

    @property
    def working(self) -> bool:
        return self._gate.is_set()

    def close(self) -> None:
        self._closing.set()
        self.queue.close()

    def join(self, timeout: float = 30.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while not self._closing.is_set():
            if not self._gate.wait(GATE_POLL_SECONDS):
                continue
            if not self._active():
                self._closing.wait(GATE_POLL_SECONDS)
                continue
            key = self.queue.get(timeout=GATE_POLL_SECONDS)
            if key is None:
                continue
            if not (self._gate.is_set() and self._active()):  # paused while we waited
                self.queue.put_back(key)
                continue
            try:
                self._one(key)
            finally:
                self.queue.done(key)

    def _one(self, key: Key) -> None:
        try:
            result = self.reconcile(key)
        except NotLeader:
            log.info("%s/%s: lease lost mid-reconcile; left for the leader", *key)
            self.queue.add(key)  # queued again once this reconcile is done
            return
        except Conflict as exc:
            log.info("%s/%s: changed since it was read (%s); reconciling it again", *key, exc)
            self.queue.add(key)
            return
        except Exception:
            delay = self.backoff.failure(key)
            log.exception("reconcile of %s/%s failed; retrying in %.0fs", *key, delay)
            self.queue.add_after(key, delay)
            return
        after = next_delay(result, self.backoff, key)
        if after is not None:
            self.queue.add_after(key, after)
