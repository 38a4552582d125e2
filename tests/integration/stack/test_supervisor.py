"""The stack supervises what it started: a component that exits is started again.

The failure this guards against: after an API-server outage of 10-20 s or more, the scheduler and
the controller-manager cannot renew their leader lease and exit; nothing brought them back, so
pods stayed Pending until someone restarted the stack. Runs on a private cluster (its own state
folder): stopping the shared stack's API server would break every other test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import stack as devstack
from kubernetes import client, config

from tests.conftest import unavailable, wait_for

OUTAGE = 20.0


def leaders(api: client.CoordinationV1Api, names: dict[str, int]) -> bool:
    """Whether each component holds its leader lease, renewed within the last 5 s."""
    for name in names:
        try:
            spec = api.read_namespaced_lease(name, "kube-system").spec
        except client.exceptions.ApiException:
            return False
        renewed = spec.renew_time.timestamp() if spec and spec.renew_time else 0.0
        if not (spec and spec.holder_identity) or time.time() - renewed > 5:
            return False
    return True


def test_scheduler_and_controller_manager_return_after_api_server_outage(tmp_path: Path) -> None:
    s = devstack.Stack(tmp_path / "stack")
    try:
        s.up(["cluster"], build=False)
    except devstack.PartFailed as exc:
        s.down()
        unavailable(str(exc))
    apiserver = 0
    try:
        before = s.cluster_pids()
        apiserver = before["kube-apiserver"]
        losers = {n: before[n] for n in ("kube-scheduler", "kube-controller-manager")}
        # Only a leader loses its lease and exits: one still waiting to acquire it when the API
        # server stops just keeps waiting (seen in a loaded CI run, a few seconds after start).
        leases = client.CoordinationV1Api(
            config.new_client_from_config(s.state()["cluster"]["kubeconfig"])
        )
        wait_for(lambda: leaders(leases, losers), 60, "scheduler and controller-manager leading")

        os.kill(apiserver, signal.SIGSTOP)
        t0 = time.monotonic()
        # They give up their leadership (and exit) 10-20 s into the outage.
        wait_for(
            lambda: not any(devstack.pid_alive(pid) for pid in losers.values()),
            timeout=60,
            what="scheduler and controller-manager exit during the outage",
        )
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - t0)))
        os.kill(apiserver, signal.SIGCONT)

        def restarted() -> dict[str, int] | None:
            now = s.cluster_pids()
            back = {n: now.get(n, 0) for n in losers}
            fresh = all(pid != losers[n] and devstack.pid_alive(pid) for n, pid in back.items())
            # The supervisor records a restart just after kwokctl has started the process: a
            # new pid can be seen a moment before its count.
            counted = s.state()["supervisor"]["restarts"]
            return back if fresh and all(counted.get(n, 0) >= 1 for n in losers) else None

        wait_for(restarted, timeout=60, what="scheduler and controller-manager restarted")
        assert "kube-scheduler" in (s.logs / "supervisor.log").read_text()

        core = client.CoreV1Api(config.new_client_from_config(s.state()["cluster"]["kubeconfig"]))
        name = f"after-outage-{uuid.uuid4().hex[:5]}"
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
            },
        )

        def running() -> str | None:
            pod = core.read_namespaced_pod(name, "default")
            return pod.spec.node_name if pod.status.phase == "Running" else None

        node = wait_for(running, timeout=90, what="a new pod scheduled and Running")
        assert node.startswith("kwok-node-")
    finally:
        if apiserver:
            with contextlib.suppress(ProcessLookupError):
                os.kill(apiserver, signal.SIGCONT)
        s.down()
