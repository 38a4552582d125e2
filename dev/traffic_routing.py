"""Where a request to a Service or through a Gateway API HTTPRoute would land on the local stack:
the kube-proxy and Gateway stand-in that e2e traffic (tests/e2e/conftest.py `Traffic`) uses.

kwok's pods run nothing, so nothing routes to them; dev/podrunner.py runs one process per pod and
knows each one's labels. This module picks among those processes the way the cluster would:

* **Service → endpoints** (kube-proxy): a Service's `spec.selector` is a plain map; it selects
  the pods whose labels contain every pair. An empty or missing selector selects nothing
  (Kubernetes manages no Endpoints for such a Service). Only ready pods are endpoints: here,
  processes that answer /health. Requests go round-robin over them (kube-proxy's IPVS mode;
  its iptables mode picks at random, which tests would have to average out).
* **HTTPRoute → Service** (a Gateway): the first rule's `backendRefs`, each a Service and a
  `weight` (default 1); a request goes to a backend chosen in proportion to the weights by
  smooth weighted round-robin (nginx's; deterministic, and every window of `sum(weights)`
  requests holds exactly `weight` of each). With no backendRefs or all weights 0 the Gateway
  answers 500 (Gateway API spec); a chosen Service without endpoints gets 503, as Envoy-based
  Gateways answer "no healthy upstream".

The pure parts (selector matching, route parsing, the weighted choice) are unit-tested in
tests/unit/dev/test_traffic_routing.py. `Router` reads the Service and route objects from the API
server every `refresh` seconds (0.5 s, like the podrunner's loop), never once per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("traffic")

GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
NO_BACKEND = 500  # a route with nothing to send to (Gateway API: MUST answer 500)
NO_ENDPOINTS = 503  # a backend Service without ready endpoints
API_TIMEOUT = 2.0  # seconds: a slow API server must not stall the traffic for long


# --- pure --------------------------------------------------------------------------------------
def service_selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service's selector against one pod's labels: every pair present; an empty selector
    selects no pod (a Service without selector gets no managed endpoints)."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class Backend:
    """One backendRef of an HTTPRoute rule: a Service in `namespace` and its weight."""

    service: str
    weight: int
    namespace: str


def route_backends(route: Mapping[str, Any]) -> list[Backend]:
    """The first rule's backendRefs. Weight defaults to 1, namespace to the route's; refs to
    anything but a core Service are kept with weight 0 (a Gateway sends them nothing a test
    could follow)."""
    ns = str(route.get("metadata", {}).get("namespace", ""))
    rules = (route.get("spec") or {}).get("rules") or []
    refs = (rules[0].get("backendRefs") or []) if rules else []
    out = []
    for ref in refs:
        service = ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")
        weight = int(ref.get("weight", 1)) if service else 0
        out.append(Backend(str(ref["name"]), weight, str(ref.get("namespace", ns))))
    return out


class SmoothWeighted:
    """nginx's smooth weighted round-robin over named items: each pick adds every item's weight
    to its running score, takes the highest (first listed on ties) and subtracts the total from
    it. Over any `sum(weights)` consecutive picks each item is picked exactly `weight` times,
    spread out rather than in runs. Items of weight 0 are never picked."""

    def __init__(self, weights: Sequence[tuple[str, int]]) -> None:
        if any(w < 0 for _, w in weights):
            raise ValueError(f"negative weight in {weights}")
        self.weights = tuple(weights)
        self.total = sum(w for _, w in weights)
        self._score = [0] * len(weights)

    def pick(self) -> str | None:
        """The next item, or None when every weight is 0."""
        if self.total == 0:
            return None
        best = 0
        for i, (_, weight) in enumerate(self.weights):
            self._score[i] += weight
            if self._score[i] > self._score[best]:
                best = i
        self._score[best] -= self.total
        return self.weights[best][0]


# --- reading the cluster -----------------------------------------------------------------------
class Endpoints(Protocol):
    """What `Router` needs of dev/podrunner.py's LocalPods."""

    core: Any  # kubernetes CoreV1Api
    custom: Any  # kubernetes CustomObjectsApi

    def endpoints_for_selector(self, namespace: str, selector: Mapping[str, str]) -> list[Any]: ...


@dataclass(frozen=True)
class Pick:
    """Where one request goes: an endpoint, or the status the cluster answers instead (0: no
    answer at all, as a Service without endpoints refuses the connection)."""

    endpoint: Any | None
    status: int = 0


class Router:
    """Picks the endpoint for each request to Service `service`, or through HTTPRoute `route`,
    in `namespace`, from what the API server says now (re-read every `refresh` seconds)."""

    def __init__(
        self,
        pods: Endpoints,
        namespace: str,
        *,
        service: str | None = None,
        route: str | None = None,
        refresh: float = 0.5,
    ) -> None:
        if (service is None) == (route is None):
            raise ValueError("Router routes to one Service or through one HTTPRoute")
        self.pods, self.namespace = pods, namespace
        self.service, self.route = service, route
        self.refresh = refresh
        self.selectors: dict[tuple[str, str], dict[str, str] | None] = {}
        self.backends: list[Backend] = []
        self._weighted = SmoothWeighted([])
        self._turn: dict[tuple[str, str], int] = {}  # round-robin position per Service
        self._next_read = 0.0

    def pick(self) -> Pick:
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + self.refresh
            self._read()
        if self.service is not None:
            return self._endpoint(self.namespace, self.service, none=0)
        chosen = self._weighted.pick()
        if chosen is None:
            return Pick(None, NO_BACKEND)
        ns, name = chosen.split("/", 1)
        return self._endpoint(ns, name, none=NO_ENDPOINTS)

    def _endpoint(self, namespace: str, service: str, none: int) -> Pick:
        selector = self.selectors.get((namespace, service))
        eps = self.pods.endpoints_for_selector(namespace, selector or {})
        if not eps:
            return Pick(None, none)
        turn = self._turn.get((namespace, service), 0)
        self._turn[(namespace, service)] = turn + 1
        return Pick(eps[turn % len(eps)])

    def _read(self) -> None:
        """The route's backends and each Service's selector; on an API error the last ones
        read stay (the cluster keeps routing while its API server is away)."""
        from kubernetes.client.exceptions import ApiException

        try:
            if self.route is not None:
                self._read_route()
                services = [(b.namespace, b.service) for b in self.backends]
            else:
                services = [(self.namespace, str(self.service))]
            for ns, name in services:
                try:
                    svc = self.pods.core.read_namespaced_service(
                        name, ns, _request_timeout=API_TIMEOUT
                    )
                    self.selectors[(ns, name)] = dict(svc.spec.selector or {})
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    self.selectors[(ns, name)] = None
        except Exception as exc:  # keep routing on what was read last
            log.warning("reading %s failed: %s", self.route or self.service, exc)

    def _read_route(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.pods.custom.get_namespaced_custom_object(
                GATEWAY_GROUP,
                GATEWAY_VERSION,
                self.namespace,
                HTTPROUTES,
                self.route,
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            obj = {"metadata": {"namespace": self.namespace}, "spec": {}}
        backends = route_backends(obj)
        if backends != self.backends:
            self.backends = backends
            self._weighted = SmoothWeighted(
                [(f"{b.namespace}/{b.service}", b.weight) for b in backends]
            )
