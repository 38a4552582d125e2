"""Session-scoped fixtures over the local stack launcher (dev/stack.py).

A fixture asks for one part (cluster, MLflow, Prometheus, Alertmanager, Pushgateway). A part
that already runs (`make stack-up`) is used as it is and left running; a part that does not is
started and stopped again when the session ends. A part that cannot start fails the test under
CI=true, with the tail of its log; locally it skips with the same message and says how to start
it.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "dev"))

import stack as devstack  # noqa: E402  (dev/ is not a package)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# MLflow's active experiment is process-wide, like its tracking URI: a test that set one (an id
# on the shared server) must not make another test's run land in an experiment its own server
# lacks. Runs a test creates only as a fixture name the experiment every server has.
DEFAULT_EXPERIMENT = "0"


def wait_for(
    check: Callable[[], Any], timeout: float = 60, what: str = "condition", interval: float = 0.3
) -> Any:
    """Polls `check` until it returns something truthy (which is returned), or fails naming
    `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def unavailable(message: str) -> None:
    """A real part is missing: a failure under CI, a skip that says what to do locally."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}\n(start it with `make stack-up`; under CI=true this is a failure)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


class TestStack:
    """Parts start on demand and stop at session end if the tests started them."""

    __test__ = False

    def __init__(self) -> None:
        self.stack = devstack.Stack()
        self.started: list[str] = []
        self.failed: dict[str, str] = {}

    def ensure(self, part: str) -> None:
        if part in self.failed:
            unavailable(self.failed[part])
        if self.stack.healthy(part):
            return
        try:
            self.stack.up([part], build=False)
        except devstack.PartFailed as exc:
            self.failed[part] = str(exc)
            unavailable(str(exc))
        self.started.append(part)

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{self.stack.state()[part]['port']}"

    def teardown(self) -> None:
        if os.environ.get("MODELDEPLOY_KEEP_STACK") or not self.started:
            return
        for part in reversed(devstack.PARTS):
            if part in self.started:
                self.stack.stop_part(part)


@pytest.fixture(scope="session")
def stack() -> Iterator[TestStack]:
    s = TestStack()
    yield s
    s.teardown()


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    kubectl_bin: Path

    @property
    def kubectl(self) -> list[str]:
        return [str(self.kubectl_bin), "--kubeconfig", self.kubeconfig]

    def api_client(self):  # type: ignore[no-untyped-def]
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)


@pytest.fixture(scope="session")
def cluster(stack: TestStack) -> Cluster:
    """The stack's cluster, with the Gateway API CRDs: `up` installs them when it starts the
    cluster; a cluster started before they were part of it gets them here."""
    stack.ensure("cluster")
    info = stack.stack.state()["cluster"]
    found = Cluster(kubeconfig=info["kubeconfig"], kubectl_bin=stack.stack.binary("kubectl"))
    if not devstack.gateway_crds_current(found.kubectl):
        devstack.install_gateway_crds(found.kubectl)
    return found


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its objects go with it)."""
    from kubernetes import client

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    api = client.CoreV1Api(cluster.api_client())
    api.create_namespace({"metadata": {"name": name, "labels": {"modeldeploy.io/test": "true"}}})
    yield name
    api.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def mlflow_uri(stack: TestStack) -> str:
    stack.ensure("mlflow")
    return stack.url("mlflow")


@pytest.fixture(scope="session")
def alertmanager_url(stack: TestStack) -> str:
    stack.ensure("alertmanager")
    return stack.url("alertmanager")


@pytest.fixture(scope="session")
def prometheus_url(stack: TestStack, alertmanager_url: str) -> str:
    stack.ensure("prometheus")
    return stack.url("prometheus")


@pytest.fixture(scope="session")
def pushgateway_url(stack: TestStack, prometheus_url: str) -> str:
    """The Pushgateway, scraped by the stack's Prometheus (which is started first)."""
    stack.ensure("pushgateway")
    return stack.url("pushgateway")
