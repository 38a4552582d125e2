"""Best-effort work done off the reconcile's path, by one thread, in the order it was handed in.

The registry's audit entry for a finished rollout (controller/reconciler.py `_record_deploys`)
is best effort: status already records the rollout, and a failed write is only logged and
posted as an Event. Written inside the reconcile, it held a worker for the registry's answer:
while 1000 new ModelDeployments became Healthy, the workers spent much of their time waiting
for MLflow to store a tag (issue 14). The reconciler now hands the write here and moves on.

The queue is bounded: when the registry cannot keep up, new work is dropped, counted and logged
rather than held in memory. On stop what is queued is done for a bounded time, so a clean
shutdown loses nothing it could write; a crash loses what was queued (as a crash between the
status write and the registry write always could).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("modeldeploy.background")
CAPACITY = 10_000
_STOP = object()


class Background:
    def __init__(
        self,
        name: str,
        capacity: int = CAPACITY,
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self.name, self._on_drop = name, on_drop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def submit(self, what: str, work: Callable[[], None]) -> None:
        """Queues `work` (described by `what` in logs); runs it inline if not started, as
        the unit tests' reconcilers do."""
        if self._thread is None:
            self._do(what, work)
            return
        try:
            self._queue.put_nowait((what, work))
        except queue.Full:
            self._on_drop()
            log.warning("%s: queue full, dropped: %s", self.name, what)

    def stop(self, timeout: float = 10.0) -> None:
        """Does what is queued (for at most `timeout` seconds), then ends the thread."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join(max(0.0, deadline - time.monotonic()))
        left = self._queue.qsize()
        if left:
            log.warning("%s: stopped with %d item(s) not done", self.name, left)
        self._thread = None

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._do(*item)

    @staticmethod
    def _do(what: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # best effort: the work reports its own failures; this is a bug
            log.exception("%s failed", what)
