"""Nothing the local stack starts is reachable from the network.

Nothing in it authenticates the way a network service must: etcd answers `POST /v3/kv/range`
with every Secret in plain text to anyone who can connect, and the API server, MLflow,
Prometheus, the Pushgateway (which takes any push) and Alertmanager are open too. So every
socket the stack's processes listen on is bound to loopback."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import Cluster, TestStack
from tests.integration.stack.sockets import listeners, stack_processes

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def test_every_process_the_stack_started_listens_on_loopback_only(
    stack: TestStack,
    cluster: Cluster,
    mlflow_uri: str,
    prometheus_url: str,
    alertmanager_url: str,
    pushgateway_url: str,
) -> None:
    found = listeners(stack_processes(stack.stack))

    exposed = [str(sock) for sock in found if not sock.loopback]
    assert not exposed, "listening outside loopback:\n" + "\n".join(exposed)
    # Not vacuous: every part and every cluster component was seen listening.
    ports = {sock.port for sock in found}
    server = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    expected = {int(server["server"].rsplit(":", 1)[1])}
    expected |= {
        int(url.rsplit(":", 1)[1])
        for url in (mlflow_uri, prometheus_url, alertmanager_url, pushgateway_url)
    }
    assert expected <= ports, f"not seen listening: {expected - ports}"
    names = {sock.name for sock in found}
    missing = [c for c in COMPONENTS if not any(n.startswith(c) for n in names)]
    assert not missing, f"no listening socket seen for {missing}; seen: {sorted(map(str, found))}"
