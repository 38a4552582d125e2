"""Polls Alertmanager's (`/api/v2/alerts`) or Prometheus' (`/api/v1/alerts`) alert API: the
second intake mode, and the safety net when a webhook notification is lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from modeldeploy.alerts.store import AlertStore, Key

log = logging.getLogger("modeldeploy.alerts")


def fetch_alerts(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Active alerts at `url`: an Alertmanager or Prometheus base URL (the kind is asked, not
    guessed: Prometheus answers /api/v1/alerts, Alertmanager /api/v2/alerts)."""
    base = url.rstrip("/")
    resp = requests.get(
        f"{base}/api/v2/alerts",
        params={"active": "true", "silenced": "false", "inhibited": "false"},
        timeout=timeout,
    )
    if resp.status_code == 404:
        body = requests.get(f"{base}/api/v1/alerts", timeout=timeout)
        body.raise_for_status()
        return list(body.json()["data"]["alerts"])
    resp.raise_for_status()
    return list(resp.json())


class AlertPoller:
    def __init__(
        self, url: str, interval: float, store: AlertStore, wake: Callable[[Key], object]
    ) -> None:
        self.url, self.interval, self.store, self.wake = url, interval, store, wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-poller", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def poll_once(self) -> set[Key]:
        changed = self.store.replace_polled(fetch_alerts(self.url), time.time())
        for key in changed:
            self.wake(key)
        return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                if self.failures:
                    log.info("alert API %s answers again", self.url)
                self.failures = 0
            except (requests.RequestException, ValueError, KeyError) as exc:
                self.failures += 1
                if self.failures == 1:
                    log.warning("cannot poll alerts at %s: %s", self.url, exc)
            self._stop.wait(self.interval)
