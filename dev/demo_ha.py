"""The demo's high-availability scene: a second operator replica joins as a standby, the leader
is killed with SIGKILL, an alias moves while nobody leads, and the standby takes the Lease and
serves the move; the killed replica comes back as the new standby (as a kubelet would restart
it). docs/operator.md "High availability" explains what happens."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import requests
import stack as devstack

LEASE = "modeldeploy-operator"  # the operator's default Lease name, in its first --namespace
RECORDS = ("operator", "operator-standby")


def _role(webhook_port: int) -> str | None:
    try:
        return str(
            requests.get(f"http://127.0.0.1:{webhook_port}/readyz", timeout=2).json()["role"]
        )
    except (requests.RequestException, ValueError, KeyError):
        return None


def failover(
    stack: devstack.Stack,
    env: dict[str, str],
    kubectl: Callable[..., str],
    start_operator: Callable[..., None],
    watch: Callable[..., dict[str, Any]],
    move_alias: Callable[[str], None],
    namespace: str,
    version: str,
    back: str,
) -> None:
    def wait(
        check: Callable[[], bool], timeout: float, what: str, record: str = "operator"
    ) -> None:
        devstack.wait_for(check, timeout, what, record, stack.logs / f"{record}.log")

    start_operator(stack, env, record="operator-standby")
    webhook = {name: int(stack.state()[name]["webhook"]) for name in RECORDS}
    webhook["operator"] = stack.operator_ports()["webhook"]
    wait(lambda: all(_role(port) for port in webhook.values()), 60, "both replicas ready")
    for name, port in webhook.items():
        print(f"   {name:17} pid {stack.state()[name]['pid']:>7}  /readyz: {_role(port)}")

    def holder() -> str:
        return kubectl(
            env, "get", "lease", LEASE, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"
        )

    leader = next(name for name, port in webhook.items() if _role(port) == "leader")
    standby = next(name for name in RECORDS if name != leader)
    print(f"   Lease {namespace}/{LEASE} held by {holder()} ({leader})")

    pid = int(stack.state()[leader]["pid"])
    t0 = time.monotonic()
    os.killpg(pid, signal.SIGKILL)  # spawn() made it a group leader
    move_alias(version)
    print(f"   SIGKILL {leader} (pid {pid}); @champion → version {version} while nobody leads")
    wait(lambda: _role(webhook[standby]) == "leader", 60, f"{standby} leading", standby)
    print(f"   {standby} leads {time.monotonic() - t0:.1f} s after the kill (Lease: {holder()})")
    watch(env, lambda st: st.get("phase") == "Healthy" and st.get("servingVersion") == version)
    print(f"   version {version} serving {time.monotonic() - t0:.1f} s after the kill")

    start_operator(stack, env, record=leader)
    wait(lambda: _role(webhook[leader]) == "standby", 60, f"{leader} back as standby", leader)
    print(f"   {leader} restarted: standby; Events name the replica that reported them:")
    columns = "custom-columns=REASON:.reason,REPORTED BY:.reportingInstance,MESSAGE:.message"
    events = kubectl(
        env,
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.kind=ModelDeployment",
        "--sort-by=.lastTimestamp",
        "-o",
        columns,
    )
    for line in events.splitlines()[:1] + events.splitlines()[-4:]:
        print(f"     {line[:110]}")

    # MLflow's webhook is registered at the "operator" replica's port (behind a Service it
    # would reach either replica): a standby there forwards the delivery to the leader.
    called = "operator"
    role = _role(webhook[called])
    t0 = time.monotonic()
    move_alias(back)
    how = "which forwards it to the leader" if role == "standby" else "which acts on it"
    print(f"   @champion → version {back}: MLflow calls {called} ({role}), {how}")
    watch(env, lambda st: st.get("phase") == "Healthy" and st.get("servingVersion") == back)
    metrics = requests.get(
        f"http://127.0.0.1:{stack.state()[called]['port']}/metrics", timeout=5
    ).text
    forwarded = [
        line for line in metrics.splitlines() if line.startswith("modeldeploy_webhook_forwards")
    ]
    print(f"   version {back} serving {time.monotonic() - t0:.1f} s after the alias moved")
    print("   " + "\n   ".join(forwarded or ["(no forwarded delivery counted)"]))
