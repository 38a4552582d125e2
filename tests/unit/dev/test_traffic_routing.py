"""dev/traffic_routing.py: where e2e traffic lands, as kube-proxy (Service selector, round-robin)
and a Gateway (HTTPRoute backendRef weights) would send it. Pure parts, and the Router on a fake
API and fake processes: no cluster."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from podrunner import Endpoint  # tests/conftest.py puts dev/ on sys.path
from traffic_routing import (
    NO_BACKEND,
    NO_ENDPOINTS,
    Backend,
    Pick,
    Router,
    SmoothWeighted,
    route_backends,
    service_selects,
)

MD = {"modeldeploy.io/modeldeployment": "m", "app.kubernetes.io/managed-by": "modeldeploy"}
STABLE = {**MD, "modeldeploy.io/track": "stable"}
CANARY = {**MD, "modeldeploy.io/track": "canary"}


# --- selector ----------------------------------------------------------------------------------
def test_a_service_selects_pods_whose_labels_hold_every_pair_of_its_selector() -> None:
    pod = {**STABLE, "pod-template-hash": "abc"}
    assert service_selects(MD, pod)  # stable and canary pods behind the one Service
    assert service_selects(MD, CANARY)
    assert service_selects({"modeldeploy.io/track": "stable", **MD}, pod)
    assert not service_selects({"modeldeploy.io/track": "stable", **MD}, CANARY)
    assert not service_selects({**MD, "other": "x"}, pod)  # a key the pod lacks


def test_a_service_without_selector_selects_no_pod() -> None:
    assert not service_selects({}, STABLE)
    assert not service_selects(None, STABLE)


# --- route -------------------------------------------------------------------------------------
def test_route_backends_are_the_first_rules_with_the_gateway_api_defaults() -> None:
    route = {
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "m", "port": 8080, "weight": 90},
                        {"name": "m-canary", "port": 8080},  # weight defaults to 1
                        {"name": "elsewhere", "namespace": "other", "weight": 5},
                        {"name": "bucket", "kind": "Bucket", "group": "s3.example", "weight": 5},
                    ]
                },
                {"backendRefs": [{"name": "second-rule", "weight": 100}]},
            ]
        },
    }
    assert route_backends(route) == [
        Backend("m", 90, "ns"),
        Backend("m-canary", 1, "ns"),
        Backend("elsewhere", 5, "other"),
        Backend("bucket", 0, "ns"),  # not a Service: nothing a test could follow
    ]


def test_a_route_without_rules_or_backends_has_no_backend() -> None:
    assert route_backends({"metadata": {"namespace": "ns"}, "spec": {}}) == []
    assert route_backends({"metadata": {"namespace": "ns"}, "spec": {"rules": [{}]}}) == []


# --- weighted choice ---------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(90, 10), (1, 1), (3, 1), (50, 30, 20), (1, 0, 2)])
def test_every_window_of_total_weight_picks_holds_each_backend_exactly_its_weight(
    weights: tuple[int, ...],
) -> None:
    names = [f"b{i}" for i in range(len(weights))]
    chooser = SmoothWeighted(list(zip(names, weights, strict=True)))
    total = sum(weights)
    picks = [chooser.pick() for _ in range(total * 7)]
    for start in range(0, len(picks), total):
        window = Counter(picks[start : start + total])
        assert {n: window[n] for n in names} == dict(zip(names, weights, strict=True))
    # Any window, not only the aligned ones, is off by at most one pick per backend.
    for start in range(len(picks) - total):
        window = Counter(picks[start : start + total])
        assert all(abs(window[n] - w) <= 1 for n, w in zip(names, weights, strict=True))


def test_weighted_picks_are_spread_out_not_in_runs() -> None:
    even = SmoothWeighted([("a", 1), ("b", 1)])
    assert [even.pick() for _ in range(6)] == ["a", "b"] * 3
    canary = SmoothWeighted([("stable", 90), ("canary", 10)])
    picks = [canary.pick() for _ in range(100)]
    at = [i for i, p in enumerate(picks) if p == "canary"]
    assert len(at) == 10 and all(b - a == 10 for a, b in pairwise(at))


def test_all_weights_zero_picks_nothing_and_negative_weights_are_refused() -> None:
    assert SmoothWeighted([("a", 0), ("b", 0)]).pick() is None
    assert SmoothWeighted([]).pick() is None
    with pytest.raises(ValueError, match="negative"):
        SmoothWeighted([("a", -1)])


# --- Router on a fake API ----------------------------------------------------------------------
class FakePods:
    """LocalPods' part the Router uses: endpoints by selector, and the API clients."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.all = endpoints
        self.services: dict[str, dict[str, str] | None] = {}
        self.routes: dict[str, dict[str, Any]] = {}
        self.api_down = False
        self.core = SimpleNamespace(read_namespaced_service=self._service)
        self.custom = SimpleNamespace(get_namespaced_custom_object=self._route)

    def endpoints_for_selector(self, namespace: str, selector: Mapping[str, str]) -> list[Endpoint]:
        return [
            e for e in self.all if e.namespace == namespace and service_selects(selector, e.labels)
        ]

    def _service(self, name: str, namespace: str, **_: Any) -> Any:
        if self.api_down:
            raise ApiException(status=503)
        if name not in self.services:
            raise ApiException(status=404)
        return SimpleNamespace(spec=SimpleNamespace(selector=self.services[name]))

    def _route(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        assert (group, version, plural) == ("gateway.networking.k8s.io", "v1", "httproutes")
        if self.api_down:
            raise ApiException(status=503)
        if name not in self.routes:
            raise ApiException(status=404)
        return self.routes[name]

    def set_route(self, name: str, *weights: tuple[str, int]) -> None:
        refs = [{"name": svc, "port": 8080, "weight": w} for svc, w in weights]
        self.routes[name] = {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"rules": [{"backendRefs": refs}]},
        }


def pod(name: str, version: str, labels: Mapping[str, str]) -> Endpoint:
    return Endpoint(name, version, f"http://{name}", "ns", "m", dict(labels))


@pytest.fixture
def pods() -> FakePods:
    return FakePods(
        [
            pod("m-1", "1", STABLE),
            pod("m-2", "1", STABLE),
            pod("m-canary-1", "2", CANARY),
            pod("x-1", "9", {"app": "unrelated"}),
        ]
    )


def versions(router: Router, n: int) -> Counter[str]:
    return Counter(router.pick().endpoint.version for _ in range(n))


def test_service_traffic_goes_round_robin_to_the_pods_its_selector_matches(pods: FakePods) -> None:
    pods.services["m"] = MD  # a canary without a route: stable and canary pods share it
    router = Router(pods, "ns", service="m", refresh=0)
    assert [router.pick().endpoint.pod for _ in range(6)] == ["m-1", "m-2", "m-canary-1"] * 2

    pods.services["m"] = {**MD, "modeldeploy.io/track": "stable"}  # the selector changes
    assert versions(router, 10) == {"1": 10}


def test_service_traffic_follows_the_selector_only_as_often_as_it_is_read(
    pods: FakePods,
) -> None:
    pods.services["m"] = {**MD, "modeldeploy.io/track": "stable"}
    router = Router(pods, "ns", service="m", refresh=3600)
    assert versions(router, 4) == {"1": 4}
    pods.services["m"] = MD
    assert versions(router, 4) == {"1": 4}  # not read again yet


def test_a_missing_or_empty_service_refuses_and_an_api_outage_keeps_the_last_selector(
    pods: FakePods,
) -> None:
    router = Router(pods, "ns", service="m", refresh=0)
    assert router.pick() == Pick(None, 0)  # no Service: the connection is refused
    pods.services["m"] = {}
    assert router.pick() == Pick(None, 0)
    pods.services["m"] = CANARY
    assert versions(router, 3) == {"2": 3}
    pods.api_down = True
    assert versions(router, 3) == {"2": 3}


def test_route_traffic_is_split_by_the_backend_weights_then_round_robin(pods: FakePods) -> None:
    pods.services["m"] = {**MD, "modeldeploy.io/track": "stable"}
    pods.services["m-canary"] = {**MD, "modeldeploy.io/track": "canary"}
    pods.set_route("r", ("m", 90), ("m-canary", 10))
    router = Router(pods, "ns", route="r", refresh=0)
    picks = [router.pick().endpoint.pod for _ in range(1000)]
    assert Counter(picks) == {"m-1": 450, "m-2": 450, "m-canary-1": 100}

    pods.set_route("r", ("m", 50), ("m-canary", 50))  # the operator moves the weights
    assert versions(router, 1000) == {"1": 500, "2": 500}


def test_a_route_with_nothing_to_send_to_answers_like_a_gateway(pods: FakePods) -> None:
    router = Router(pods, "ns", route="r", refresh=0)
    assert router.pick() == Pick(None, NO_BACKEND)  # no such route
    pods.set_route("r", ("m", 0), ("m-canary", 0))
    assert router.pick() == Pick(None, NO_BACKEND)
    pods.set_route("r", ("m-canary", 1))  # the Service does not exist (yet)
    assert router.pick() == Pick(None, NO_ENDPOINTS)
    pods.services["m-canary"] = {**MD, "modeldeploy.io/track": "canary"}
    assert router.pick().endpoint.pod == "m-canary-1"


def test_a_router_targets_one_service_or_one_route(pods: FakePods) -> None:
    with pytest.raises(ValueError):
        Router(pods, "ns")
    with pytest.raises(ValueError):
        Router(pods, "ns", service="m", route="r")
