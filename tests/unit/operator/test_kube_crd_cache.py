"""Which monitoring CRDs the cluster serves is cached (a CRD watch invalidates it). A CRD event
that arrives while an answer is being read must not be lost: that answer may predate the event,
and keeping it as fresh left MonitoringReady=False for minutes after the CRDs were established
(seen in a loaded CI run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kubernetes import client

from modeldeploy.controller.kube import MONITORING_CRDS, Kube


def crd(established: bool) -> Any:
    status = "True" if established else "False"
    return SimpleNamespace(
        status=SimpleNamespace(conditions=[SimpleNamespace(type="Established", status=status)])
    )


class Ext:
    """CRD reads; `during_read` runs inside the first read, as a watch event would."""

    def __init__(self, kube: Kube) -> None:
        self.established = False
        self.during_read: Any = None
        self.reads = 0

    def read_custom_resource_definition(self, name: str) -> Any:
        self.reads += 1
        answer = crd(self.established)
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return answer


def kube() -> tuple[Kube, Ext]:
    k = Kube(client.ApiClient())
    ext = Ext(k)
    k.ext = ext  # type: ignore[assignment]
    return k, ext


def test_an_answer_read_while_a_crd_event_arrived_is_not_kept() -> None:
    k, ext = kube()

    def event() -> None:  # the CRDs become Established while the old state is being read
        ext.established = True
        k.invalidate_monitoring_crds()

    ext.during_read = event
    assert k.monitoring_crds() != frozenset(MONITORING_CRDS)  # read partly before the event
    assert k.monitoring_crds() == frozenset(MONITORING_CRDS)  # read again, not the stale one


def test_an_undisturbed_answer_is_cached_and_an_event_invalidates_it() -> None:
    k, ext = kube()
    assert k.monitoring_crds() == frozenset()
    reads = ext.reads
    ext.established = True
    assert k.monitoring_crds() == frozenset()  # cached
    assert ext.reads == reads
    k.invalidate_monitoring_crds()
    assert k.monitoring_crds() == frozenset(MONITORING_CRDS)
