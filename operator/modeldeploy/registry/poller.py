"""The registry poller: one thread that asks each distinct registry question once per interval
(ResolutionCache.poll) and wakes only the ModelDeployments whose answer changed.

It polls only while this replica leads: a standby's cache has no askers, and the new leader
forgets every answer when it takes over (controller/operator.py), so its first reconciles ask
afresh anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from modeldeploy.registry.cache import ResolutionCache, Subscriber

log = logging.getLogger("modeldeploy.registry.poller")
# How often the thread looks for due questions: a question is asked at most this late.
TICK_SECONDS = 1.0


class RegistryPoller:
    def __init__(
        self,
        cache: ResolutionCache,
        wake: Callable[[Subscriber], object],
        active: Callable[[], bool],
        tick: float = TICK_SECONDS,
    ) -> None:
        self._cache, self._wake, self._active, self._tick = cache, wake, active, tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def poll_once(self) -> set[Subscriber]:
        """One round: the ModelDeployments woken (those whose answer changed)."""
        woken = self._cache.poll()
        for key in sorted(woken):
            self._wake(key)
        if woken:
            log.info("registry answers changed for %d ModelDeployment(s)", len(woken))
        return woken

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            if not self._active():
                continue
            try:
                self.poll_once()
            except Exception:  # a bug in one round must not end polling for good
                log.exception("registry poll failed")
