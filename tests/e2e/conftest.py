"""e2e fixtures: the operator fixtures of the integration tier, plus models with a bad version
(flaky, or a classifier whose outputs drifted), real serving processes for the pods
(dev/podrunner.py) and traffic."""

from __future__ import annotations

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
    """Predictions (`good`, a body every version accepts) against every live process of one
    ModelDeployment, until stopped. With `bad`, every `bad_every`-th request sends that body
    instead; its answers are counted apart in `bad_codes`."""

    def __init__(
        self,
        pods: object,
        md: str,
        rate: float = 40.0,
        bad: bytes | None = None,
        bad_every: int = 10,
        good: bytes = GOOD_INPUT,
    ) -> None:
        self.pods, self.md, self.rate, self.good = pods, md, rate, good
        self.bad, self.bad_every = bad, bad_every
        self.codes: Counter[tuple[str, int]] = Counter()  # good requests: (version, status)
        self.bad_codes: Counter[tuple[str, int]] = Counter()  # bad ones: (version, status)
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        sent = 0
        while not self._stop.is_set():
            for ep in self.pods.endpoints(self.md):  # type: ignore[attr-defined]
                sent += 1
                bad = self.bad is not None and sent % self.bad_every == 0
                try:
                    r = session.post(
                        f"{ep.url}/invocations",
                        data=self.bad if bad else self.good,
                        headers={"Content-Type": "application/json"},
                        timeout=2,
                    )
                except requests.RequestException:
                    continue
                self.first_seen.setdefault(ep.version, time.monotonic())
                (self.bad_codes if bad else self.codes)[(ep.version, r.status_code)] += 1
            self._stop.wait(1 / self.rate)
