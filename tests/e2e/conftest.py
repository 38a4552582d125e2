"""e2e fixtures: the operator fixtures of the integration tier, plus models with a bad version
(flaky, or a classifier whose outputs drifted), real serving processes for the pods
(dev/podrunner.py) and traffic routed like the cluster would route it."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import classifier_model  # dev/ modules (tests/conftest.py puts dev/ on sys.path)
import cloudpickle
import flaky_model
import mlflow
import pytest
import requests
import stack as devstack
from podrunner import Endpoint, LocalPods
from traffic_routing import Router

from tests.conftest import DEFAULT_EXPERIMENT, Cluster, TestStack
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures)
    Registry,
    crd,
    kube,
    pytest_runtest_makereport,
    registry,
    start_operator,
)


def add_flaky_version(reg: Registry, name: str, failure_share: float = 0.5) -> str:
    cloudpickle.register_pickle_by_value(flaky_model)
    return _register(
        reg,
        name,
        lambda: mlflow.pyfunc.log_model(
            name="model", python_model=flaky_model.Flaky(failure_share)
        ),
    )


# A body both classifiers below answer with a known class mix (dev/classifier_model.py): pass it
# as Traffic's `good`. Its rows are a frame, so their confidence is observed too.
CLASSIFIER_INPUT = classifier_model.INPUT


def add_good_classifier_version(reg: Registry, name: str, confidence: float = 0.9) -> str:
    """A classifier that never fails and predicts classes 0, 1, 2 in equal shares for
    CLASSIFIER_INPUT, each with top class probability `confidence`."""
    return _register(reg, name, lambda: classifier_model.log(classifier_model.good(confidence)))


def add_drifted_classifier_version(reg: Registry, name: str, confidence: float = 0.9) -> str:
    """A classifier that never fails either, but predicts class 0 for 10 of CLASSIFIER_INPUT's
    12 rows (1 each for classes 1 and 2): output PSI against the good one's shares about 1.1."""
    return _register(reg, name, lambda: classifier_model.log(classifier_model.drifted(confidence)))


def _register(reg: Registry, name: str, log_model: Callable[[], Any]) -> str:
    """Logs a model in a run of the experiment every server has and registers it as the next
    version of `name`."""
    mlflow.set_tracking_uri(reg.uri)  # process-wide: other tests may have pointed it elsewhere
    with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT):
        info = log_model()
    mv = reg.client.create_model_version(name, info.model_uri, model_id=info.model_id)
    return str(mv.version)


@pytest.fixture
def monitoring(
    cluster: Cluster, stack: TestStack, prometheus_url: str, alertmanager_url: str
) -> Iterator[TestStack]:
    """The Prometheus Operator CRDs installed, Prometheus and Alertmanager up; Alertmanager's
    receiver is restored afterwards."""
    devstack.install_monitoring_crds(cluster.kubectl)
    yield stack
    port = stack.stack.operator_ports()["webhook"]
    stack.stack.set_alert_webhook(f"http://127.0.0.1:{port}/alerts/alertmanager")


GOOD_INPUT = b'{"inputs": [[1.5]]}'


class Traffic:
    """Predictions (`good`, a body every version accepts) to one ModelDeployment until stopped,
    routed the way the cluster would route them:

    * `via_service=True` (default): to Service `<md>` as kube-proxy would: round-robin over the
      live processes whose pod labels match the Service's selector, read from the API server
      every ~0.5 s (so a canary's pods share the traffic exactly when the Service selects them).
    * `route="<name>"`: through that HTTPRoute as a Gateway would: each request to a backend
      Service of its first rule in proportion to the weights (smooth weighted round-robin, see
      dev/traffic_routing.py), then round-robin over that Service's endpoints.
    * `service="<name>"`: to that Service instead of `<md>`, as kube-proxy would (a blue-green
      preview's `<md>-preview`).
    * `via_service=False`: every live process of the ModelDeployment in turn (by its
      modeldeployment label), whatever selects it: the behaviour before Services were followed.

    `rate` is requests per second (in the last mode: rounds per second, one request per
    process a round). With `bad`, every `bad_every`-th request sends that body instead.

    Counted: `codes[(version, status)]` for the answers of serving processes to `good` bodies,
    `bad_codes` likewise for `bad` ones; `events`, one `(monotonic time, version, status)` per
    good request, also those with no answer from a process: status 0 with the version when the
    connection failed or timed out, `("", 0)` when the Service had no endpoint (kube-proxy
    refuses the connection), `("", 500)` / `("", 503)` when the route had no backend with a
    weight / its chosen Service had no endpoint (what a Gateway answers). `failures()` and
    `answers()` count them within a time window."""

    def __init__(
        self,
        pods: LocalPods,
        md: str,
        rate: float = 40.0,
        bad: bytes | None = None,
        bad_every: int = 10,
        good: bytes = GOOD_INPUT,
        *,
        via_service: bool = True,
        route: str | None = None,
        service: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.pods, self.md, self.rate, self.good = pods, md, rate, good
        self.bad, self.bad_every = bad, bad_every
        self.codes: Counter[tuple[str, int]] = Counter()  # good requests: (version, status)
        self.bad_codes: Counter[tuple[str, int]] = Counter()  # bad ones: (version, status)
        self.events: list[tuple[float, str, int]] = []  # good requests: (t, version, status)
        self.first_seen: dict[str, float] = {}
        self.router: Router | None = None
        if via_service or route is not None or service is not None:
            if namespace is None:
                if len(pods.namespaces) != 1:
                    raise ValueError("Traffic: name the namespace when LocalPods follows several")
                (namespace,) = pods.namespaces
            target = {"route": route} if route is not None else {"service": service or md}
            self.router = Router(pods, namespace, **target)
        self._sent = 0
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def answers(self, since: float = 0.0, until: float = math.inf) -> Counter[tuple[str, int]]:
        """Good requests by (version, status) sent within [since, until) (monotonic times)."""
        return Counter((v, code) for t, v, code in list(self.events) if since <= t < until)

    def failures(self, since: float = 0.0, until: float = math.inf) -> Counter[tuple[str, int]]:
        """Good requests within [since, until) that a user would count as failed: no answer
        (status 0) or a 5xx."""
        return Counter(
            {k: n for k, n in self.answers(since, until).items() if k[1] == 0 or k[1] >= 500}
        )

    def _run(self) -> None:
        if self.router is None:
            while not self._stop.is_set():
                for ep in self.pods.endpoints(self.md):
                    self._send(ep)
                self._stop.wait(1 / self.rate)
            return
        next_at = time.monotonic()
        while not self._stop.is_set():
            pick = self.router.pick()
            if pick.endpoint is None:
                self.events.append((time.monotonic(), "", pick.status))
            else:
                self._send(pick.endpoint)
            next_at = max(next_at + 1 / self.rate, time.monotonic())  # late: no catching up
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, ep: Endpoint) -> None:
        self._sent += 1
        bad = self.bad is not None and self._sent % self.bad_every == 0
        try:
            r = self._session.post(
                f"{ep.url}/invocations",
                data=self.bad if bad else self.good,
                headers={"Content-Type": "application/json"},
                timeout=2,
            )
            status = r.status_code
        except requests.RequestException:
            status = 0
        if not bad:
            self.events.append((time.monotonic(), ep.version, status))
        if status:
            self.first_seen.setdefault(ep.version, time.monotonic())
            (self.bad_codes if bad else self.codes)[(ep.version, status)] += 1
