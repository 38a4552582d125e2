"""The firing alerts the operator knows of, per ModelDeployment.

Two sources feed it: Alertmanager webhook notifications (firing and resolved, by fingerprint) and
a poller that reads the whole active set from Alertmanager's or Prometheus' API (the safety net
for a lost webhook; it replaces its own share each time). An alert belongs to the
ModelDeployment its `namespace` and `modeldeployment` labels name — the labels the operator's
PrometheusRule groups by — and names a version by `model_version`. The same notification
delivered twice changes nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy import names

Key = tuple[str, str]


@dataclass(frozen=True)
class FiringAlert:
    name: str
    namespace: str
    modeldeployment: str
    model_version: str
    fingerprint: str
    received_at: float  # epoch seconds when the operator first heard of it
    summary: str = ""

    @property
    def key(self) -> Key:
        return (self.namespace, self.modeldeployment)


def _fingerprint(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


def parse_alert(raw: Mapping[str, Any], now: float) -> FiringAlert | None:
    """One alert from any of the three formats; None if it is not about a ModelDeployment."""
    labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
    ns, md = labels.get(names.PROM_NAMESPACE), labels.get(names.PROM_MODELDEPLOYMENT)
    name, version = labels.get("alertname"), labels.get(names.PROM_MODEL_VERSION)
    if not (ns and md and name and version):
        return None
    summary = str((raw.get("annotations") or {}).get("summary", ""))
    fp = str(raw.get("fingerprint") or _fingerprint(labels))
    return FiringAlert(name, ns, md, version, fp, now, summary)


def _state(raw: Mapping[str, Any]) -> str:
    """firing | resolved | pending, across Alertmanager webhook, Alertmanager v2 and Prometheus."""
    status = raw.get("status")
    if isinstance(status, Mapping):  # Alertmanager API v2: {"state": "active" | "suppressed"}
        return "firing" if status.get("state") == "active" else "suppressed"
    if isinstance(status, str):  # webhook: "firing" | "resolved"
        return status
    return str(raw.get("state", "firing"))  # Prometheus: "firing" | "pending"


class AlertStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pushed: dict[str, FiringAlert] = {}
        self._polled: dict[str, FiringAlert] = {}
        self._first_seen: dict[str, float] = {}

    def _remember(self, alert: FiringAlert) -> FiringAlert:
        first = self._first_seen.setdefault(alert.fingerprint, alert.received_at)
        if first == alert.received_at:
            return alert
        return FiringAlert(
            alert.name,
            alert.namespace,
            alert.modeldeployment,
            alert.model_version,
            alert.fingerprint,
            first,
            alert.summary,
        )

    def apply_notification(self, payload: Mapping[str, Any], now: float) -> set[Key]:
        """An Alertmanager webhook notification; returns the ModelDeployments it changed."""
        changed: set[Key] = set()
        with self._lock:
            for raw in payload.get("alerts") or ():
                alert = parse_alert(raw, now)
                if alert is None:
                    continue
                if _state(raw) == "firing":
                    if alert.fingerprint not in self._pushed:
                        changed.add(alert.key)
                    self._pushed[alert.fingerprint] = self._remember(alert)
                elif self._pushed.pop(alert.fingerprint, None) is not None:
                    changed.add(alert.key)
            self._gc()
        return changed

    def replace_polled(self, raws: Iterable[Mapping[str, Any]], now: float) -> set[Key]:
        """The complete active set from a poll; returns the ModelDeployments whose set changed."""
        return self._replace(raws, now, pushed=False)

    def replace_pushed(
        self, raws: Iterable[Mapping[str, Any]], now: float, kept_since: float
    ) -> set[Key]:
        """The complete active set read from Alertmanager's API in place of what its webhook
        pushed: a replica that starts leading re-learns the alerts still firing that were pushed
        to another replica (or before a restart), and forgets pushed ones that resolved. Alerts
        pushed since `kept_since` (when the read began) are newer than the read and stay."""
        return self._replace(raws, now, pushed=True, kept_since=kept_since)

    def _replace(
        self,
        raws: Iterable[Mapping[str, Any]],
        now: float,
        pushed: bool,
        kept_since: float = float("inf"),
    ) -> set[Key]:
        fresh: dict[str, FiringAlert] = {}
        for raw in raws:
            alert = parse_alert(raw, now)
            if alert is not None and _state(raw) == "firing":
                fresh[alert.fingerprint] = alert
        with self._lock:
            share = self._pushed if pushed else self._polled
            for fp, alert in share.items():
                if alert.received_at >= kept_since and fp not in fresh:
                    fresh[fp] = alert
            before = {fp: a.key for fp, a in share.items()}
            share.clear()
            share.update({fp: self._remember(a) for fp, a in fresh.items()})
            changed = {a.key for fp, a in fresh.items() if fp not in before}
            changed |= {key for fp, key in before.items() if fp not in fresh}
            self._gc()
        return changed

    def firing(self, key: Key) -> tuple[FiringAlert, ...]:
        with self._lock:
            merged = {**self._polled, **self._pushed}
        return tuple(
            sorted((a for a in merged.values() if a.key == key), key=lambda a: a.received_at)
        )

    def _gc(self) -> None:
        live = self._pushed.keys() | self._polled.keys()
        for fp in [fp for fp in self._first_seen if fp not in live]:
            del self._first_seen[fp]
