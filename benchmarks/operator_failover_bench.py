"""Leader election: how fast a standby takes over, and what two replicas cost without it.

Local stack (real API server on kwok, real MLflow), default lease timings (15 s lease duration,
10 s renew deadline, 2 s retry period), two `modeldeploy operator` processes on one namespace,
the registry webhook pointing at the standby (tests/integration/operator/
test_high_availability.py starts them the same way). A ModelDeployment follows @champion and
polls the registry once an hour, so only the webhook or a new leader's re-read sees a move.

i.   SIGKILL of the leader (a node failure) → the standby's /leaderz answers 200; and → an alias
     move made right after the kill is Healthy on the new version, as a watch sees it (MLflow's
     event reaches the standby, which cannot forward it to a dead leader; it picks the move up
     when it takes over and re-reads every ModelDeployment).
ii.  SIGTERM (a clean stop: the workers finish, then the Lease is released) → the standby leads;
     and → an alias move made right after is Healthy.
iii. Reference, measured in the same run: one replica; two with leader election; two with
     `--no-leader-election` (the behaviour before it: both reconcile). Each moves the alias
     1 → 2 → 3 → 1 and counts status writes (MODIFIED watch events that change the status),
     RolloutStarted Events and the time of each move (alias set → a watch sees Healthy on the
     new version). The moves of one run are bounded (--bound, default 60 s): a fight cannot run
     away; a run that hits the bound is reported as not converged.

Runs are interleaved (kill, term; then the three arms in turn, order rotated each round) so the
machine's drift spreads over all of them. Each run has its own namespace, hence its own Lease.

`--smoke` (the test suite runs it, tests/e2e/test_benchmarks_smoke.py): the least that runs
every code path once: one SIGTERM failover (a SIGKILL differs only in the signal and costs a
whole lease duration), one move in the one-replica arm (the other arms differ only in how the
pair starts, which the failover ran); no figures are written.

Usage: python benchmarks/operator_failover_bench.py [--runs N] [--bound S] [--markdown PATH]
       [--log-dir DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "dev")]

import stack as devstack  # noqa: E402
from kit import machine, new_namespace  # noqa: E402
from tests.conftest import Cluster  # noqa: E402
from tests.integration.operator.conftest import Kube, Operator, Registry  # noqa: E402
from tests.integration.operator.test_high_availability import (  # noqa: E402
    StatusWatch,
    delete_registry_webhooks,
    leads,
    registry_webhooks,
    start_pair,
    webhook_args,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
MOVES = ("2", "3", "1")
ARMS = ("single", "elected", "no-election")
ARM_LABEL = {
    "single": "1 replica (leader election on)",
    "elected": "2 replicas, leader election",
    "no-election": "2 replicas, `--no-leader-election`",
}


@dataclass
class Env:
    cluster: Cluster
    kube: Kube
    reg: Registry
    mlflow_uri: str
    log_dir: Path
    loads: list[float] = field(default_factory=list)


@dataclass
class Failover:
    leads_after: float  # signal sent → standby's /leaderz 200
    healthy_after: float  # signal sent → the move made right after is Healthy (watch)


@dataclass
class Moves:
    writes: int  # status writes during the three moves
    started: int  # RolloutStarted Events during the three moves
    seconds: list[float]  # each converged move: alias set → Healthy on the new version
    history: int  # history entries at the end (4 when nothing was repeated)
    converged: bool


def setup(stack: devstack.Stack) -> tuple[Cluster, Kube, Registry, str]:
    """The parts already running are used as they are; a missing one is started."""
    for part in ("cluster", "mlflow"):
        if not stack.healthy(part):
            stack.up([part], build=False)
    info = stack.state()["cluster"]
    cluster = Cluster(kubeconfig=info["kubeconfig"], kubectl_bin=stack.binary("kubectl"))
    devstack.apply_crds(cluster.kubectl, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])
    mlflow_uri = f"http://127.0.0.1:{stack.state()['mlflow']['port']}"
    return cluster, Kube(cluster), Registry(mlflow_uri), mlflow_uri


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> float:
    """Polls until `check` is truthy; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def healthy_on(watch: StatusWatch, version: str, since: float, timeout: float) -> float | None:
    """When the watch first saw a write at or after `since` with Healthy on `version` (None: not
    within `timeout`)."""

    def check(st: dict[str, Any]) -> bool:
        return (st.get("phase"), st.get("servingVersion")) == ("Healthy", version)

    try:
        poll(lambda: watch.first(check, since) is not None, max(timeout, 0.0), version)
    except TimeoutError:
        return None
    return watch.first(check, since)


def pair(env: Env, ns: str, extra: list[str] | None = None) -> tuple[Operator, Operator, str]:
    hook = f"ha-{ns}"
    b = Operator(env.cluster, ns, env.mlflow_uri, env.log_dir, webhook=False)
    b.args += webhook_args(b, hook) + (extra or [])
    args = webhook_args(b, hook) + (extra or [])
    a = Operator(env.cluster, ns, env.mlflow_uri, env.log_dir, webhook=False, extra_args=args)
    return a, b, hook


def follow(env: Env, ns: str, versions: int) -> str:
    model = env.reg.new_model(versions=versions)
    env.reg.set_alias(model, "champion", "1")
    spec = {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}}
    env.kube.create_md(ns, "m", spec)
    env.kube.wait_phase(ns, "m", "Healthy", serving="1", timeout=120)
    return model


def failover_run(env: Env, sig: signal.Signals) -> Failover:
    ns = new_namespace(env.kube, "bench-failover")
    a, b, hook = pair(env, ns)
    watch: StatusWatch | None = None
    try:
        start_pair(a, b, env.reg, hook)
        model = follow(env, ns, versions=2)
        watch = StatusWatch(env.kube, ns)
        assert a.proc is not None
        t0 = time.monotonic()
        os.killpg(a.proc.pid, sig)
        env.reg.set_alias(model, "champion", "2")
        led = poll(lambda: leads(b), 120, "the standby leading")
        healthy = healthy_on(watch, "2", t0, 120)
        if healthy is None:
            raise TimeoutError("the move made after the leader stopped never became Healthy")
        env.loads.append(os.getloadavg()[0])
        return Failover(led - t0, healthy - t0)
    finally:
        if watch is not None:
            watch.stop()
        for op in (b, a):
            op.stop()
        delete_registry_webhooks(env.reg, hook)
        env.kube.core.delete_namespace(ns)


def moves_run(env: Env, arm: str, bound: float, moves: tuple[str, ...] = MOVES) -> Moves:
    ns = new_namespace(env.kube, f"bench-{arm}")
    extra = ["--no-leader-election"] if arm == "no-election" else []
    a, b, hook = pair(env, ns, extra)
    started_ops: list[Operator] = []
    watch: StatusWatch | None = None
    try:
        if arm == "elected":
            start_pair(a, b, env.reg, hook)
            started_ops = [a, b]
        else:
            started_ops = [b] if arm == "single" else [a, b]
            for op in started_ops:
                op.start()
            url = webhook_args(b, hook)[1]
            poll(lambda: any(h.url == url for h in registry_webhooks(env.reg, hook)), 60, "hook")
        model = follow(env, ns, versions=3)
        before = len(env.kube.events(ns, "RolloutStarted"))
        watch = StatusWatch(env.kube, ns)
        deadline = time.monotonic() + bound
        seconds: list[float] = []
        for version in moves:
            t0 = time.monotonic()
            env.reg.set_alias(model, "champion", version)
            seen = healthy_on(watch, version, t0, deadline - time.monotonic())
            if seen is None:
                break
            seconds.append(seen - t0)
        time.sleep(3)  # writes trailing the last Healthy count too
        watch.stop()
        env.loads.append(os.getloadavg()[0])
        return Moves(
            writes=watch.count(),
            started=len(env.kube.events(ns, "RolloutStarted")) - before,
            seconds=seconds,
            history=len(env.kube.status(ns, "m").get("history") or ()),
            converged=len(seconds) == len(moves),
        )
    finally:
        if watch is not None:
            watch.stop()
        for op in reversed(started_ops):
            op.stop()
        delete_registry_webhooks(env.reg, hook)
        env.kube.core.delete_namespace(ns)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def markdown(
    kills: list[Failover],
    terms: list[Failover],
    arms: dict[str, list[Moves]],
    env: Env,
    bound: float,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = f"{min(env.loads):.1f}-{max(env.loads):.1f}" if env.loads else "?"
    lines = [
        "## Operator failover and leader election",
        "",
        f"Measured {now} on {machine()} (shared machine; 1-minute load average {load} during the "
        "runs), local stack (`dev/stack.py`): kwok cluster, MLflow. Default lease timings (15 s "
        "duration, 10 s renew deadline, 2 s retry period); two `modeldeploy operator` processes "
        "on one namespace, the registry webhook pointing at the standby; one ModelDeployment "
        "following @champion (one serving replica, registry polled hourly). Method in "
        "`benchmarks/operator_failover_bench.py`.",
        "",
        "| measurement | runs | median | min | max |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [
        ("i. SIGKILL of the leader → standby's /leaderz 200", [k.leads_after for k in kills]),
        (
            "i. SIGKILL → alias move made right after it Healthy on the new version",
            [k.healthy_after for k in kills],
        ),
        ("ii. SIGTERM of the leader → standby's /leaderz 200", [t.leads_after for t in terms]),
        (
            "ii. SIGTERM → alias move made right after it Healthy on the new version",
            [t.healthy_after for t in terms],
        ),
    ]
    for label, xs in rows:
        if xs:
            lines.append(
                f"| {label} | {len(xs)} | {med(xs):.1f} s | {min(xs):.1f} s | {max(xs):.1f} s |"
            )
    lines += [
        "",
        f"iii. The alias moved 1 → 2 → 3 → 1 (three rollouts) in each run, the moves bounded at "
        f"{bound:.0f} s together; medians over runs.",
        "",
        "| replicas | runs | moves converged | status writes | RolloutStarted Events "
        "| history entries | the three moves took |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def took(m: Moves) -> float:
        return sum(m.seconds) if m.converged else math.inf  # censored at the bound

    def seconds(x: float) -> str:
        return f"> {bound:.0f} s" if math.isinf(x) else f"{x:.2f} s"

    for arm in ARMS:
        ms = arms.get(arm) or []
        if ms:
            lines.append(
                f"| {ARM_LABEL[arm]} | {len(ms)} | {sum(len(m.seconds) for m in ms)}/"
                f"{len(ms) * len(MOVES)} | {med([m.writes for m in ms]):.0f} "
                f"| {med([m.started for m in ms]):.0f} | {med([m.history for m in ms]):.0f} "
                f"| {seconds(med([took(m) for m in ms]))} |"
            )

    def ratio(f: Callable[[Moves], float], num: list[Moves], den: list[Moves]) -> str:
        n, d = med([f(m) for m in num]), med([f(m) for m in den])
        if math.isinf(n):
            return f"> {bound / d:.0f}"
        return f"{n / d:.2f}" if d else "n/a"

    pairs = [
        ("no-election", "elected", "2 replicas: without / with leader election"),
        ("elected", "single", "with leader election: 2 replicas / 1 replica"),
    ]
    pairs = [(n, d, label) for n, d, label in pairs if arms.get(n) and arms.get(d)]
    if pairs:
        lines += [
            "",
            "| ratio of medians | status writes | RolloutStarted Events | the three moves took |",
            "|---|---:|---:|---:|",
        ]
        for num, den, label in pairs:
            n, d = arms[num], arms[den]
            lines.append(
                f"| {label} | {ratio(lambda m: m.writes, n, d)} "
                f"| {ratio(lambda m: m.started, n, d)} | {ratio(took, n, d)} |"
            )
    lines.append("")
    lines += [
        "- i/ii: the clock starts when the signal is sent. After a SIGKILL the standby must see "
        "the Lease unchanged for a whole lease duration (15 s, on its own clock, from when it "
        "last saw it change, which is up to one retry period after the leader's last renewal), "
        "then acquire it on its next retry (≤ 2 s). After a SIGTERM the leader's workers finish, "
        "it releases the Lease, and the standby takes it on its next retry. The move's time adds "
        "the takeover's re-read of every ModelDeployment and the rollout on kwok.",
        "- iii: *status writes* are MODIFIED watch events whose status differs from the one "
        "before (nothing else writes these objects); *RolloutStarted Events*: Events of that "
        "reason posted during the moves (three rollouts: 3 when nothing is repeated); a move's "
        "time runs from the alias write to the first watch event showing Healthy on the new "
        "version. Without leader election both replicas reconcile, but MLflow calls only one of "
        "them: the other keeps its cached answer for @champion (cached for the poll interval, "
        "here an hour) and re-applies the old version whenever the Deployment changes, so the "
        "two roll the Deployment back and forth until the bound stops the run (history entries: "
        "10 is the history limit, older entries fell out).",
    ]
    for label, xs in rows:
        if xs:
            lines.append(f"- Samples, {label} (s): {', '.join(f'{x:.1f}' for x in xs)}")
    for arm in ARMS:
        for_arm = arms.get(arm) or []
        if for_arm:
            lines.append(
                f"- Samples, {ARM_LABEL[arm]} (writes/Events per run): "
                + ", ".join(f"{m.writes}/{m.started}" for m in for_arm)
            )
    lines.append("")
    return "\n".join(lines)


def smoke(env: Env, bound: float) -> str:
    term = failover_run(env, signal.SIGTERM)
    move = moves_run(env, "single", bound, moves=MOVES[:1])
    if not move.converged:
        raise SystemExit(f"smoke: the move did not converge within {bound:.0f} s: {move}")
    markdown([], [term], {"single": [move]}, env, bound)  # renders
    return (
        f"smoke ok: SIGTERM → leads {term.leads_after:.1f} s, healthy {term.healthy_after:.1f} s; "
        f"one move {move.seconds[0]:.2f} s, {move.writes} status writes"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=5, help="runs of each measurement")
    p.add_argument("--bound", type=float, default=60.0, help="seconds the moves of a run may take")
    p.add_argument("--markdown", type=Path, help="write the results section here")
    p.add_argument("--log-dir", type=Path, help="operator logs (default: the stack's logs/bench)")
    p.add_argument("--smoke", action="store_true", help="each code path once; no figures")
    args = p.parse_args(argv)
    stack = devstack.Stack()
    cluster, kube, reg, mlflow_uri = setup(stack)
    log_dir = args.log_dir or stack.logs / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = Env(cluster, kube, reg, mlflow_uri, log_dir)
    if args.smoke:
        print(smoke(env, args.bound))
        return 0
    kills: list[Failover] = []
    terms: list[Failover] = []
    for r in range(args.runs):
        kills.append(failover_run(env, signal.SIGKILL))
        terms.append(failover_run(env, signal.SIGTERM))
        print(
            f"   failover {r + 1}/{args.runs}: SIGKILL leads {kills[-1].leads_after:.1f} s, "
            f"healthy {kills[-1].healthy_after:.1f} s; SIGTERM leads {terms[-1].leads_after:.1f} s, "
            f"healthy {terms[-1].healthy_after:.1f} s",
            file=sys.stderr,
        )
    arms: dict[str, list[Moves]] = {arm: [] for arm in ARMS}
    for r in range(args.runs):
        order = ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]
        for arm in order:
            m = moves_run(env, arm, args.bound)
            arms[arm].append(m)
            print(
                f"   moves {r + 1}/{args.runs} {arm}: {m.writes} writes, {m.started} started, "
                f"{', '.join(f'{s:.2f}' for s in m.seconds)} s"
                + ("" if m.converged else " (bound reached)"),
                file=sys.stderr,
            )
    text = markdown(kills, terms, arms, env, args.bound)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
