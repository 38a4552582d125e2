"""Leader election through a coordination.k8s.io/v1 Lease, with client-go's rules.

Every replica runs one elector thread. The holder renews the Lease every `retry_period`; the
others read it as often and take it over once they have seen it unchanged for `lease_duration`
(measured on their own monotonic clock from when they saw it change, so clocks need not agree,
only run at similar rates). The holder counts itself the leader only while its last successful
renewal is younger than `renew_deadline` (< lease_duration): past that it stops at once, before
anyone else may take over. On a clean stop the holder releases the Lease (empty holder), so a
standby takes over within one retry period instead of a whole lease duration.

The Lease also carries the leader's webhook URL in an annotation: standbys forward the webhook
deliveries they receive to it (controller/endpoints.py).

Why not the `kubernetes` client's own `leaderelection` package: its loop cannot be stopped (a
thread would outlive `stop()`), it never releases the Lease, it tells no one who leads (the
standbys need the leader's URL) and it talks through the global default client. Why not kopf's
peering: it needs its own cluster-wide CRDs, pauses the whole kopf operator (our webhook
endpoints must answer on every replica) and, with its default 60 s lifetime, fails over in up
to a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modeldeploy import names
from modeldeploy.controller.kube import Conflict, LeaseAPI

log = logging.getLogger("modeldeploy.leader")


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period}s, {self.renew_deadline}s, {self.lease_duration}s"
            )


@dataclass(frozen=True)
class Holder:
    identity: str
    url: str | None


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must change for a holder to count as alive (client-go compares the whole record)."""
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity"),
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseDurationSeconds"),
        spec.get("leaseTransitions"),
    )


class LeaderElector:
    def __init__(
        self,
        api: LeaseAPI,
        namespace: str,
        name: str,
        identity: str,
        url: str | None,
        timing: Timing = Timing(),
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.identity, self.url, self.timing = identity, url, timing
        self.on_started, self.on_stopped = on_started, on_stopped
        self.clock, self.wall = clock, wall
        self._lock = threading.Lock()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = float("-inf")
        self._renewed_at = float("-inf")  # last successful acquire or renew, monotonic
        self._holding = False  # the Lease names us (as of our last look)
        self._leading = False  # on_started ran and on_stopped has not
        self._holder: Holder | None = None
        self._seen = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what others ask -------------------------------------------------------------------
    def leading(self) -> bool:
        """True only while we hold the Lease and renewed it within the renew deadline: checked
        before every write, so a replica that cannot renew stops writing in time."""
        with self._lock:
            fresh = self.clock() - self._renewed_at < self.timing.renew_deadline
            return self._leading and self._holding and fresh

    def holder(self) -> Holder | None:
        """Who holds the Lease, as of the last look (None: nobody, or not looked yet)."""
        with self._lock:
            return self._holder

    def observed(self) -> bool:
        """Whether this replica has read the Lease at least once (it knows its role)."""
        with self._lock:
            return self._seen

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops electing; a holder stops leading and releases the Lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a failing callback must not end the elections of this replica
                log.exception("leader election round failed; trying again")
            self._stop.wait(self.timing.retry_period)
        self._set_leading(False)
        self.release()

    def step(self) -> None:
        """One round: try to acquire or renew, then start or stop leading accordingly."""
        try:
            ours = self.try_acquire_or_renew()
        except Exception as exc:  # the API server is unreachable: keep trying
            log.warning("leader election: cannot read or write Lease %s: %s", self.name, exc)
            ours = False
        if ours:
            self._set_leading(True)
        elif not self.leading():
            self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        with self._lock:
            changed = self._leading != leading
            self._leading = leading
        if not changed:
            return
        if leading:
            log.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.name)
            try:
                self.on_started()
            except Exception:  # it cannot do its job as leader: step down, let another lead
                with self._lock:
                    self._leading = False
                self.release()
                self.on_stopped()  # undo whatever part of the start happened
                raise
        else:
            log.warning(
                "%s stopped leading (Lease %s/%s)", self.identity, self.namespace, self.name
            )
            self.on_stopped()

    # --- the Lease --------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        now = self.wall()
        lease = self.api.read_lease(self.namespace, self.name)
        if lease is None:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": self._annotations(),
                },
                "spec": self._spec(now, acquired=now, transitions=0),
            }
            try:
                created = self.api.create_lease(self.namespace, body)
            except Conflict:
                return False
            return self._took(created)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = _record(lease)
        with self._lock:
            self._seen = True
            if record != self._observed:
                self._observed, self._observed_at = record, self.clock()
            url = ((lease.get("metadata") or {}).get("annotations") or {}).get(
                names.ANNOTATION_LEADER_URL
            )
            self._holder = Holder(holder, url) if holder else None
            self._holding = holder == self.identity
            expired = self.clock() >= self._observed_at + self.timing.lease_duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        new = dict(lease)
        new["metadata"] = {
            **lease["metadata"],
            "annotations": {
                **((lease.get("metadata") or {}).get("annotations") or {}),
                **self._annotations(),
            },
        }
        new["spec"] = self._spec(
            now,
            acquired=spec.get("acquireTime") if mine else now,
            transitions=transitions if mine else transitions + 1,
        )
        try:
            replaced = self.api.replace_lease(self.namespace, self.name, new)
        except Conflict:  # someone else wrote it first; look again next round
            return False
        return self._took(replaced)

    def _took(self, lease: Mapping[str, Any]) -> bool:
        with self._lock:
            self._seen = True
            self._observed, self._observed_at = _record(lease), self.clock()
            self._renewed_at = self.clock()
            self._holding = True
            self._holder = Holder(self.identity, self.url)
        return True

    def _spec(self, now: datetime, acquired: Any, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_duration)),
            "acquireTime": acquired if isinstance(acquired, str) else _micro_time(acquired),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _annotations(self) -> dict[str, str | None]:
        return {names.ANNOTATION_LEADER_URL: self.url}

    def release(self) -> None:
        """Gives the Lease up if we hold it, so the next leader need not wait for it to expire."""
        try:
            lease = self.api.read_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = _micro_time(self.wall())
            spec = dict(lease.get("spec") or {})
            spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=now)
            self.api.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
            with self._lock:
                self._holding, self._holder = False, None
            log.info("%s released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:  # it expires by itself
            log.warning("could not release Lease %s: %s", self.name, exc)


class SoleReplica:
    """The elector's interface when leader election is off: this replica always leads."""

    def __init__(self, identity: str, url: str | None) -> None:
        self.identity, self.url = identity, url

    def leading(self) -> bool:
        return True

    def holder(self) -> Holder | None:
        return Holder(self.identity, self.url)

    def observed(self) -> bool:
        return True
