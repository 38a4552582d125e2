"""How fast a bad model version is rolled back, on the local stack with every part real.

A. Alert received → Deployment patched: an Alertmanager notification (as Alertmanager sends it)
   is POSTed to the operator's /alerts/alertmanager; the time until a watch on the namespace's
   Deployments sees the template back on the good version. Goal: median < 0.5 s, p99 < 2 s.
B. Bad traffic starting → rollback patched, with the shipped settings: the CRD's default alert
   rule (error rate > 5 % over 1m, for 30s), the local stack's Prometheus (2 s scrape and
   evaluation) and Alertmanager (group_wait 1 s), the operator's webhook receiver. Real serving
   processes (dev/podrunner.py) answer; version 2 fails half of its predictions. The clock starts
   at the first answer of version 2 and stops when the Deployment is patched back. Goal: p95 < 45 s
   (with Prometheus' and Alertmanager's defaults the first webhook alone leaves after ~150 s).

`--smoke` (the test suite runs it, tests/e2e/test_benchmarks_smoke.py): one sample of A and one
of B, B with test-sized alerts (error rate > 20 % over 20 s, for 4 s) instead of the shipped
ones, so the whole path runs in seconds; no figures are written. Uses the stack's parts that run
(MODELDEPLOY_STACK_DIR) and starts the missing ones.

Usage: python benchmarks/rollback_bench.py [--alerts N] [--runs N] [--markdown PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "dev")]

import requests  # noqa: E402
import stack as devstack  # noqa: E402
from kit import machine, new_namespace  # noqa: E402
from kubernetes import client, watch  # noqa: E402
from podrunner import LocalPods  # noqa: E402
from tests.conftest import Cluster  # noqa: E402
from tests.e2e.conftest import Traffic, add_flaky_version  # noqa: E402
from tests.integration.operator.conftest import (  # noqa: E402
    Kube,
    Operator,
    Registry,
    delete_registry_webhooks,
)
from tests.integration.operator.test_alert_intake import notification  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The parts the measurements use (the Pushgateway is not one of them).
PARTS = ("cluster", "mlflow", "alertmanager", "prometheus")
# --smoke's alert rule for B (tests/e2e/test_rollback.py's test-sized one): fires in seconds.
SMOKE_ALERTS = {"errorRate": 0.2, "for": "4s", "window": "20s"}


class PatchWatch:
    """Records when each Deployment of a namespace first has its template on `version`."""

    def __init__(self, api: client.ApiClient, namespace: str, version: str) -> None:
        self.apps, self.namespace, self.version = client.AppsV1Api(api), namespace, version
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            for ev in w.stream(
                self.apps.list_namespaced_deployment, self.namespace, timeout_seconds=5
            ):
                dep = ev["object"]
                env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
                if env.get("MODEL_VERSION") == self.version:
                    self.seen.setdefault(dep.metadata.name, time.monotonic())
                if self._stop.is_set():
                    w.stop()
                    break

    def forget(self, name: str) -> None:
        self.seen.pop(name, None)

    def wait(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while name not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not patched to version {self.version} in {timeout}s")
            time.sleep(0.005)
        return self.seen[name]

    def stop(self) -> None:
        self._stop.set()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def setup(stack: devstack.Stack) -> tuple[Cluster, Kube, Registry, str]:
    stack.up(PARTS, build=False)
    info = stack.state()["cluster"]
    cluster = Cluster(kubeconfig=info["kubeconfig"], kubectl_bin=stack.binary("kubectl"))
    import subprocess

    subprocess.run(
        [*cluster.kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    devstack.install_monitoring_crds(cluster.kubectl)
    mlflow_uri = f"http://127.0.0.1:{stack.state()['mlflow']['port']}"
    return cluster, Kube(cluster), Registry(mlflow_uri), mlflow_uri


def bench_alert_to_patch(
    cluster: Cluster, kube: Kube, reg: Registry, mlflow_uri: str, n: int, log_dir: Path
) -> list[float]:
    ns = new_namespace(kube, "bench-alert")
    op = Operator(cluster, ns, mlflow_uri, log_dir).start()
    watcher = PatchWatch(cluster.api_client(), ns, "1")
    try:
        models = []
        for i in range(n):  # version 1 healthy first, so there is something to roll back to
            models.append(reg.new_model(versions=2))
            reg.set_alias(models[-1], "champion", "1")
            kube.create_md(ns, f"m{i}", {"model": {"name": models[-1], "alias": "champion"}})
        for i in range(n):
            kube.wait_phase(ns, f"m{i}", "Healthy", serving="1", timeout=120)
        for model in models:
            reg.set_alias(model, "champion", "2")
        for i in range(n):
            kube.wait_phase(ns, f"m{i}", "Healthy", serving="2", timeout=120)
        watcher.seen.clear()
        samples = []
        url = f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager"
        # The bearer token the stack's Alertmanager sends (credentials_file in its config), which
        # the operator was started with (Operator: MODELDEPLOY_ALERT_WEBHOOK_TOKEN).
        auth = {"Authorization": f"Bearer {op.env['MODELDEPLOY_ALERT_WEBHOOK_TOKEN']}"}
        for i in range(n):
            t0 = time.monotonic()
            res = requests.post(url, json=notification(ns, f"m{i}", "2"), headers=auth, timeout=10)
            res.raise_for_status()
            samples.append(watcher.wait(f"m{i}", 10) - t0)
            time.sleep(0.2)
        return samples
    finally:
        watcher.stop()
        op.stop()
        # MLflow would go on calling a dead URL at every registry event, delaying the others.
        delete_registry_webhooks(mlflow_uri, {op.webhook_name} if op.webhook_name else set())
        kube.core.delete_namespace(ns)


def bench_traffic_to_rollback(
    cluster: Cluster,
    kube: Kube,
    reg: Registry,
    mlflow_uri: str,
    runs: int,
    stack: devstack.Stack,
    log_dir: Path,
    alerts: dict[str, Any] | None = None,
) -> list[float]:
    """`alerts`: the ModelDeployment's `monitoring.alerts` (None: the CRD's defaults)."""
    ns = new_namespace(kube, "bench-rollback")
    op = Operator(cluster, ns, mlflow_uri, log_dir).start()
    stack.set_alert_webhook(f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager")
    watcher = PatchWatch(cluster.api_client(), ns, "1")
    samples = []
    try:
        with LocalPods(ns, stack=stack) as pods:
            for r in range(runs):
                md = f"m{r}"
                model = reg.new_model(versions=1)
                bad = add_flaky_version(reg, model)
                reg.set_alias(model, "champion", "1")
                spec: dict[str, Any] = {"model": {"name": model, "alias": "champion"}}
                if alerts is not None:
                    spec["monitoring"] = {"alerts": alerts}
                kube.create_md(ns, md, spec)
                kube.wait_phase(ns, md, "Healthy", serving="1", timeout=120)
                pods.wait_for_version(md, "1", timeout=120)
                with Traffic(pods, md) as traffic:
                    time.sleep(3)  # healthy traffic first, as in production
                    watcher.forget(md)
                    reg.set_alias(model, "champion", bad)
                    pods.wait_for_version(md, bad, timeout=120)
                    while bad not in traffic.first_seen:
                        time.sleep(0.05)
                    patched = watcher.wait(md, 180)
                    samples.append(patched - traffic.first_seen[bad])
                print(f"   run {r + 1}/{runs}: {samples[-1]:.1f} s", file=sys.stderr)
                kube.custom.delete_namespaced_custom_object(
                    "modeldeploy.io", "v1alpha1", ns, "modeldeployments", md
                )
        return samples
    finally:
        watcher.stop()
        op.stop()
        delete_registry_webhooks(mlflow_uri, {op.webhook_name} if op.webhook_name else set())
        port = stack.operator_ports()["webhook"]
        stack.set_alert_webhook(f"http://127.0.0.1:{port}/alerts/alertmanager")
        kube.core.delete_namespace(ns)


def markdown(a: list[float], b: list[float], args: Any) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ms = [x * 1000 for x in a]
    lines = [
        "## Automatic rollback",
        "",
        f"Measured {now} on {machine()} (shared machine), local stack (`dev/stack.py`): kwok cluster, "
        "MLflow, Prometheus 2 s scrape/evaluation, Alertmanager group_wait 1 s, "
        "`--rules.alert.resend-delay=5s`. Method in `benchmarks/rollback_bench.py`.",
        "",
        "| measurement | samples | median | p95 | p99 | max | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    if a:
        lines.append(
            f"| A. alert received → Deployment patched | {len(a)} | {statistics.median(ms):.0f} ms | "
            f"{pct(ms, 0.95):.0f} ms | {pct(ms, 0.99):.0f} ms | {max(ms):.0f} ms | median < 500 ms, p99 < 2 s |"
        )
    if b:
        lines.append(
            f"| B. bad traffic starts → rollback patched (shipped settings) | {len(b)} | "
            f"{statistics.median(b):.1f} s | {pct(b, 0.95):.1f} s | {pct(b, 0.99):.1f} s | {max(b):.1f} s | p95 < 45 s |"
        )
    lines += [
        "",
        "- A: a notification POSTed as Alertmanager sends it; the clock stops when a watch on the "
        "namespace's Deployments sees the template on the good version (so it includes the watch "
        "delay). One ModelDeployment per sample, one operator.",
        "- B: version 2 fails half of its predictions; the clock starts at its first answer. The "
        "CRD's default rule waits `for: 30s` after the error rate crosses 5 % over a 1m window, so "
        "about 30 s of every sample is that deliberate wait; the rest is scraping, evaluation, "
        "Alertmanager and the operator. With Prometheus' and Alertmanager's defaults (1m scrape, "
        "1m evaluation, 30 s group_wait) the first webhook alone leaves after about 150 s.",
        f"- Samples (B, s): {', '.join(f'{x:.1f}' for x in b)}" if b else "",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--alerts", type=int, default=30, help="samples for A")
    p.add_argument("--runs", type=int, default=3, help="samples for B (each takes about a minute)")
    p.add_argument("--markdown", type=Path, help="write the results section here")
    p.add_argument("--smoke", action="store_true", help="one short sample of each; no figures")
    args = p.parse_args(argv)
    if args.smoke:
        args.alerts, args.runs, args.markdown = 1, 1, None
    stack = devstack.Stack()
    cluster, kube, reg, mlflow_uri = setup(stack)
    log_dir = stack.logs / "bench"
    log_dir.mkdir(exist_ok=True)
    print("A. alert received → Deployment patched", file=sys.stderr)
    a = (
        bench_alert_to_patch(cluster, kube, reg, mlflow_uri, args.alerts, log_dir)
        if args.alerts
        else []
    )
    if a:
        print(
            f"   median {statistics.median(a) * 1000:.0f} ms, p99 {pct(a, 0.99) * 1000:.0f} ms",
            file=sys.stderr,
        )
    print("B. bad traffic → rollback patched (shipped settings)", file=sys.stderr)
    alerts = SMOKE_ALERTS if args.smoke else None
    b = (
        bench_traffic_to_rollback(cluster, kube, reg, mlflow_uri, args.runs, stack, log_dir, alerts)
        if args.runs
        else []
    )
    text = markdown(a, b, args)
    if args.smoke:
        print(f"smoke ok: A {a[0] * 1000:.0f} ms, B {b[0]:.1f} s (test-sized alerts)")
        return 0
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
