"""The operator at scale: N ModelDeployments on one operator, from apply to idle (issue 14).

Local stack (real API server on kwok, real MLflow); one `modeldeploy operator` with its default
flags (and any `--operator-arg`) plus the registry webhook (started as
tests/integration/operator/conftest.py's `Operator` starts it), watching every namespace. `--models` registered models (two versions each, @champion
on 1) and `--namespaces` namespaces; ModelDeployment i is in namespace i mod namespaces, one
serving replica each. The first `--shared` of them follow one model (the "shared alias"), the
others the remaining models in turn. For each N of `--sizes`, in fresh namespaces:

1. apply → all Healthy: the ModelDeployments are created one after another; the clock runs from
   the first create until a watch sees every one Healthy on version 1.
2. idle, after a 10 s settle, over `--idle` seconds: the API server's write requests (its own
   /metrics, `apiserver_request_total`, verbs POST/PUT/PATCH/APPLY/DELETE) to the resources the
   operator writes (ModelDeployments, their children, Events; not its Lease), per
   ModelDeployment per minute; and the operator's CPU (user+system from /proc, % of one core).
   Nothing else runs on the stack during a run: the writes to those resources are the
   operator's (kwok's and the controllers' idle writes go to pods, nodes and leases).
3. alias move by webhook: @champion of the shared model 1 → 2; time until the watch sees the
   first and all of its ModelDeployments Healthy on version 2.
4. alias move by polling: the operator's MLflow webhook deleted, @champion 2 → 1; the same
   times (the default poll interval is 30 s).
5. restart with nothing changed: SIGTERM, a new operator with the same flags; the writes from
   its start until `--idle` seconds after it answers /readyz, and the time from its start to its
   last write, when 35 s without one follow ("not quiet" when not: it writes while idle).
6. the children alone (the reference): with no operator running, the children the operator
   made (Deployment, Service, ServiceMonitor, PrometheusRule per ModelDeployment, as they are
   in the cluster, without the operator's label) are copied into fresh namespaces and
   server-side applied by a plain client from FLOOR_THREADS threads; the time from the first
   apply until a watch sees every Deployment available. It is what the cluster itself needs for
   those objects (its controllers, scheduler and kwok make ~15 API requests per Deployment):
   no operator can be faster than it on the same machine.
Peak RSS is the operator's VmHWM (/proc), read at the end of each size (the first process).

The cluster needs a Service IP range above 253 Services for N > 250 (dev/stack.py
SERVICE_CIDR; a cluster created before it keeps a /24: recreate it) and kwok nodes for N pods
(added here, 110 pods each). Run it on a stack nobody else uses (MODELDEPLOY_STACK_DIR): the
operator watches every namespace.

`--smoke` (the test suite runs it, tests/e2e/test_benchmarks_smoke.py): N=4 in 2 namespaces
watched by name (not the whole cluster: the test stack has other tests' objects), 2 models,
2 s settle, 5 s idle and restart windows, the polling move with a 5 s poll interval; no
figures written.

Usage: python benchmarks/operator_scale_bench.py [--sizes N ...] [--idle S] [--markdown PATH]
       [--operator-arg=--workers=16 ...] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "dev")]

import stack as devstack  # noqa: E402
import yaml  # noqa: E402
from kit import machine  # noqa: E402
from kubernetes import client, watch  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from kubernetes.dynamic import DynamicClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.conftest import Cluster  # noqa: E402
from tests.integration.operator.conftest import (  # noqa: E402
    GROUP,
    PLURAL,
    VERSION,
    Kube,
    Operator,
    Registry,
    delete_registry_webhooks,
)

from modeldeploy.names import (  # noqa: E402
    LABEL_MANAGED_BY,
    LABEL_MODELDEPLOYMENT,
    OP_KUBE_REQUESTS,
)
from modeldeploy.render.objects import MANAGED_BY  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
# What the operator writes: the ModelDeployment (status), its children, Events.
OPERATOR_RESOURCES = {
    "modeldeployments",
    "deployments",
    "services",
    "servicemonitors",
    "prometheusrules",
    "httproutes",
    "events",
}
PODS_PER_NODE = 110  # dev/stack.py kwok_nodes
SETTLE = 10.0
# The reference's client (6.): more threads than the operator's default 4 workers, so it is not
# the client that limits it.
FLOOR_THREADS = 8
FLOOR_LABEL = "scale-bench/floor"
CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
)
# Seconds without a write that count as idle after a restart: longer than the default poll
# interval (30 s), since an operator that re-applies on every poll writes in bursts.
QUIET = 35.0


@dataclass
class Result:
    n: int
    applied: float = math.nan  # seconds to create the N ModelDeployments
    healthy: float = math.nan  # first create → all Healthy
    writes_per_md_min: float = math.nan
    writes_by: Counter[str] = field(default_factory=Counter)
    # The operator's own requests from its start until all were Healthy (its
    # modeldeploy_kube_requests_total, the leader Lease's left out), by "METHOD resource".
    ramp_requests: Counter[str] = field(default_factory=Counter)
    cpu: float = math.nan  # % of one core, idle
    rss_mib: float = math.nan
    shared: int = 0
    webhook_first: float = math.nan
    webhook_all: float = math.nan
    poll_first: float = math.nan
    poll_all: float = math.nan
    restart_writes: int = 0
    restart_quiet: float | None = None  # None: no quiet 10 s in the window
    floor: float = math.nan  # the children alone: first apply → all Deployments available
    load: float = math.nan


class Followed:
    """Objects kept current by one list + watch in a thread of their own (a poll of 1000
    objects a second would load the API server the benchmark measures). `list_call(*args,
    **kwargs)` lists them, dicts or the client's typed objects; subclasses `keep` each."""

    def __init__(self, list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._list, self._args, self._kwargs = list_call, args, kwargs
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def keep(self, obj: Any) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            listed = self._list(*self._args, **self._kwargs)
            if isinstance(listed, dict):
                items, rv = listed["items"], listed["metadata"]["resourceVersion"]
            else:
                items, rv = listed.items, listed.metadata.resource_version
            for obj in items:
                self.keep(obj)
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self._list, *self._args, resource_version=rv, timeout_seconds=30, **self._kwargs
                ):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.keep(ev["object"])
                    if self._stop.is_set():
                        w.stop()
            except ApiException as exc:
                if exc.status != 410:  # 410: the resourceVersion expired; list again
                    raise

    def stop(self) -> None:
        self._stop.set()


class Statuses(Followed):
    """(namespace, name) → (phase, servingVersion) of every ModelDeployment in `namespaces`, kept
    by one cluster-wide list + watch."""

    def __init__(self, api: client.ApiClient, namespaces: set[str]) -> None:
        self.namespaces = namespaces
        self.state: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        custom = client.CustomObjectsApi(api)
        super().__init__(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)

    def keep(self, obj: dict[str, Any]) -> None:
        meta, st = obj["metadata"], obj.get("status") or {}
        if meta["namespace"] in self.namespaces:
            self.state[(meta["namespace"], meta["name"])] = (
                st.get("phase"),
                st.get("servingVersion"),
            )

    def count(self, keys: list[tuple[str, str]], version: str) -> int:
        return sum(self.state.get(k) == ("Healthy", version) for k in keys)


def copied(
    api_version: str, kind: str, obj: dict[str, Any], namespace: str, tag: str
) -> dict[str, Any]:
    """A child as the operator made it, for `namespace`: its spec, labels (but the operator's
    managed-by, so no operator would take it for its own) and annotations; what the API server
    assigned (a Service's cluster IPs, a Deployment's revision) left for it to assign again."""
    meta = obj["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != LABEL_MANAGED_BY}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith("deployment.kubernetes.io/")
    }
    spec = dict(obj["spec"])
    if kind == "Service":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": meta["name"],
            "namespace": namespace,
            "labels": {**labels, FLOOR_LABEL: tag},
            "annotations": annotations,
        },
        "spec": spec,
    }


class Available(Followed):
    """How many Deployments matching `selector` are available (every replica of their current
    generation), kept by one list + watch."""

    def __init__(self, api: client.ApiClient, selector: str) -> None:
        self.state: dict[tuple[str, str], bool] = {}
        apps = client.AppsV1Api(api)
        super().__init__(apps.list_deployment_for_all_namespaces, label_selector=selector)

    def keep(self, dep: Any) -> None:
        meta, spec, st = dep.metadata, dep.spec, dep.status
        self.state[(meta.namespace, meta.name)] = bool(
            st
            and (st.observed_generation or 0) >= (meta.generation or 0)
            and (st.available_replicas or 0) >= (spec.replicas or 0)
            and (st.updated_replicas or 0) >= (spec.replicas or 0)
        )

    def count(self) -> int:
        return sum(self.state.values())


class ApiWrites:
    """Write requests the API server counted (its /metrics), by resource and verb."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def read(self) -> Counter[str]:
        res = self.api.call_api("GET", f"{self.api.configuration.host}/metrics")
        # Some MB: only the request counter is parsed.
        wanted = [
            line
            for line in res.read().decode().splitlines()
            if line.startswith("apiserver_request_total{")
        ]
        counts: Counter[str] = Counter()
        for fam in text_string_to_metric_families("\n".join(wanted) + "\n"):
            for s in fam.samples:
                verb, resource = s.labels.get("verb"), s.labels.get("resource")
                if verb in WRITE_VERBS and resource in OPERATOR_RESOURCES:
                    sub = s.labels.get("subresource")
                    counts[f"{verb} {resource}{'/' + sub if sub else ''}"] += int(s.value)
        return counts


def operator_requests(op: Operator) -> Counter[str]:
    counts: Counter[str] = Counter()
    for fam in text_string_to_metric_families(op.metrics()):
        for s in fam.samples:
            if s.name == OP_KUBE_REQUESTS and s.labels["resource"] != "leases" and s.value:
                counts[f"{s.labels['method']} {s.labels['resource']}"] += int(s.value)
    return counts


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls `check` every 0.2 s; returns the monotonic time it was first true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def say(msg: str) -> None:
    print(f"[scale {datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    cluster: Cluster
    kube: Kube
    reg: Registry
    mlflow_uri: str
    log_dir: Path
    models: int
    namespaces: int
    shared: int
    idle: float
    cluster_wide: bool
    poll_interval: str | None  # spec.registry.pollInterval (None: the operator's default)
    timeout: float
    settle: float = SETTLE
    wait_deleted: bool = True  # the next size starts on a cluster without the last one's
    operator_args: list[str] = field(default_factory=list)  # beyond the defaults

    def ensure_capacity(self, n: int) -> None:
        """kwok nodes for n pods, and a Service range for n more Services."""
        nodes = max(devstack.NODE_COUNT, math.ceil(n * 1.2 / PODS_PER_NODE))
        subprocess.run(
            [*self.cluster.kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump_all(devstack.kwok_nodes(nodes)),
            text=True,
            check=True,
            capture_output=True,
        )
        cidrs = client.NetworkingV1Api(self.cluster.api_client()).list_service_cidr().items
        room = sum(2 ** (32 - int(c.split("/")[1])) - 2 for s in cidrs for c in s.spec.cidrs)
        in_use = len(self.kube.core.list_service_for_all_namespaces().items)
        if room - in_use < n:
            raise SystemExit(
                f"the cluster's Service range has room for {room - in_use} more Services, "
                f"{n} are needed: recreate the stack (`make stack-down && make stack-up`) so it "
                f"gets dev/stack.py's SERVICE_CIDR"
            )

    def operator(self, first_ns: str, names: list[str]) -> Operator:
        op = Operator(
            self.cluster, first_ns, self.mlflow_uri, self.log_dir, extra_args=self.operator_args
        )
        args = op.args
        i = args.index("--namespace")
        del args[i : i + 2]
        if not self.cluster_wide:
            for ns in names:
                args += ["--namespace", ns]
        return op

    def run(self, n: int) -> Result:
        r = Result(n=n, shared=min(self.shared, n // 2))
        tag = uuid.uuid4().hex[:4]
        names = [f"scale-{tag}-{i}" for i in range(min(self.namespaces, n))]
        self.ensure_capacity(n)
        for ns in names:
            self.kube.core.create_namespace({"metadata": {"name": ns}})
        models = [self.reg.new_model(versions=2) for _ in range(min(self.models, n))]
        for m in models:
            self.reg.set_alias(m, "champion", "1")
        keys = [(names[i % len(names)], f"md-{i}") for i in range(n)]
        shared_keys = keys[: r.shared]
        statuses = Statuses(self.cluster.api_client(), set(names))
        writes = ApiWrites(self.cluster.api_client())
        op = self.operator(names[0], names)
        try:
            op.start()
            assert op.proc is not None
            pid = op.proc.pid
            say(f"N={n}: operator pid {pid} up; applying {n} ModelDeployments")
            t0 = time.monotonic()
            for i, (ns, name) in enumerate(keys):
                model = models[0] if i < r.shared else models[1 + i % (len(models) - 1)]
                spec: dict[str, Any] = {"model": {"name": model, "alias": "champion"}}
                if self.poll_interval:
                    spec["registry"] = {"pollInterval": self.poll_interval}
                self.kube.create_md(ns, name, spec)
            r.applied = time.monotonic() - t0
            say(f"N={n}: applied in {r.applied:.1f} s; waiting for all Healthy")
            last = [0.0]

            def all_healthy() -> bool:
                done = statuses.count(keys, "1")
                if time.monotonic() - last[0] > 10:
                    say(f"N={n}: {done}/{n} Healthy after {time.monotonic() - t0:.0f} s")
                    last[0] = time.monotonic()
                return done == n

            r.healthy = wait(all_healthy, self.timeout, f"{n} Healthy") - t0
            say(f"N={n}: all Healthy {r.healthy:.1f} s after the first create")
            r.ramp_requests = operator_requests(op)
            say(
                f"N={n}: operator requests per ModelDeployment until then: "
                f"{sum(r.ramp_requests.values()) / n:.1f} ({dict(r.ramp_requests)})"
            )

            time.sleep(self.settle)
            w0, c0, t1 = writes.read(), cpu_seconds(pid), time.monotonic()
            time.sleep(self.idle)
            w1, c1, t2 = writes.read(), cpu_seconds(pid), time.monotonic()
            r.writes_by = w1 - w0
            minutes = (t2 - t1) / 60
            r.writes_per_md_min = sum(r.writes_by.values()) / n / minutes
            r.cpu = 100 * (c1 - c0) / (t2 - t1)
            say(
                f"N={n}: idle {r.writes_per_md_min:.2f} writes per ModelDeployment per minute "
                f"({dict(r.writes_by.most_common(6))}), CPU {r.cpu:.1f} % of a core"
            )

            assert op.webhook_name is not None
            wait(lambda: self.subscribed(op), 60, "the operator's MLflow webhook registered")
            r.webhook_first, r.webhook_all = self.move(models[0], "2", shared_keys, statuses)
            say(f"N={n}: webhook move: first {r.webhook_first:.1f} s, all {r.webhook_all:.1f} s")
            delete_registry_webhooks(self.mlflow_uri, {op.webhook_name})
            r.poll_first, r.poll_all = self.move(models[0], "1", shared_keys, statuses)
            say(f"N={n}: polling move: first {r.poll_first:.1f} s, all {r.poll_all:.1f} s")
            r.rss_mib = peak_rss_mib(pid)

            op.stop()
            op.webhook_name = None  # the new one registers it again
            op = self.operator(names[0], names)
            r.restart_writes, r.restart_quiet = self.restart(op, writes)
            quiet = "not quiet" if r.restart_quiet is None else f"quiet {r.restart_quiet:.1f} s"
            say(f"N={n}: restart: {r.restart_writes} writes, {quiet}")
            op.stop()
            self.ensure_capacity(2 * n)  # the operator's pods and Services are still there
            r.floor = self.children_alone(names, tag)
            say(f"N={n}: the children alone: all available {r.floor:.1f} s after the first apply")
            r.load = os.getloadavg()[0]
            return r
        finally:
            statuses.stop()
            op.stop()
            if op.webhook_name:
                delete_registry_webhooks(self.mlflow_uri, {op.webhook_name})
            self.cleanup(names)

    def children_alone(self, names: list[str], tag: str) -> float:
        """The reference (6. in the module's doc): seconds from the first apply of the copied
        children until every copied Deployment is available."""
        api = self.cluster.api_client()
        dyn = DynamicClient(api)
        kinds = {(av, k): dyn.resources.get(api_version=av, kind=k) for av, k in CHILD_KINDS}
        floor_ns = {ns: f"floor-{tag}-{i}" for i, ns in enumerate(names)}
        by_owner: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = {}
        for (av, kind), res in kinds.items():
            listed = dyn.get(res, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}").to_dict()
            for obj in listed["items"]:
                meta = obj["metadata"]
                if meta["namespace"] in floor_ns:
                    body = copied(av, kind, obj, floor_ns[meta["namespace"]], tag)
                    owner = meta["labels"][LABEL_MODELDEPLOYMENT]
                    by_owner.setdefault((meta["namespace"], owner), []).append((res, body))
        for ns in floor_ns.values():
            self.kube.core.create_namespace({"metadata": {"name": ns}})
        wanted = sum(
            1 for group in by_owner.values() for res, _ in group if res.kind == "Deployment"
        )
        available = Available(api, f"{FLOOR_LABEL}={tag}")

        def apply(group: list[tuple[Any, dict[str, Any]]]) -> None:
            for res, body in group:
                dyn.server_side_apply(
                    res,
                    body=body,
                    namespace=body["metadata"]["namespace"],
                    field_manager="scale-bench",
                    force_conflicts=True,
                )

        try:
            t0 = time.monotonic()
            with ThreadPoolExecutor(FLOOR_THREADS) as pool:
                list(pool.map(apply, by_owner.values()))
            done = wait(lambda: available.count() >= wanted, self.timeout, "children available")
            return done - t0
        finally:
            available.stop()
            self.cleanup(list(floor_ns.values()))

    def subscribed(self, op: Operator) -> bool:
        token = None
        while True:
            page = self.reg.client.list_webhooks(page_token=token)
            if any(h.name == op.webhook_name for h in page):
                return True
            token = page.token
            if not token:
                return False

    def move(
        self, model: str, version: str, keys: list[tuple[str, str]], statuses: Statuses
    ) -> tuple[float, float]:
        """@champion of `model` to `version`: seconds until the first and all of `keys` are
        Healthy on it."""
        t0 = time.monotonic()
        self.reg.set_alias(model, "champion", version)
        first = wait(lambda: statuses.count(keys, version) > 0, 300, f"first on {version}")
        done = wait(lambda: statuses.count(keys, version) == len(keys), 300, f"all on {version}")
        return first - t0, done - t0

    def restart(self, op: Operator, writes: ApiWrites) -> tuple[int, float | None]:
        """Starts `op` and samples the write count every 2 s until `idle` seconds after it is
        ready: the writes since its start, and when (from its start) its last write was, if
        QUIET seconds without one followed before the end (None: not so)."""
        t0, base = time.monotonic(), sum(writes.read().values())
        op.start()
        ready = time.monotonic() - t0
        samples = [(0.0, base)]
        while time.monotonic() - t0 < ready + self.idle:
            time.sleep(2.0)
            samples.append((time.monotonic() - t0, sum(writes.read().values())))
        end, total = samples[-1]
        last = next(t for t, count in samples if count == total)  # the last write before it
        return total - base, (last if end - last >= QUIET else None)

    def cleanup(self, names: list[str]) -> None:
        for ns in names:
            self.kube.core.delete_namespace(ns, propagation_policy="Background")
        say(f"deleting {len(names)} namespaces")
        if not self.wait_deleted:
            return

        def gone() -> bool:
            live = {n.metadata.name for n in self.kube.core.list_namespace().items}
            return not live & set(names)

        try:
            wait(gone, 600, "namespaces deleted")
        except TimeoutError as exc:
            say(f"{exc}; going on")


def setup(stack: devstack.Stack) -> tuple[Cluster, Kube, Registry, str]:
    """The parts already running are used as they are; a missing one is started."""
    for part in ("cluster", "mlflow"):
        if not stack.healthy(part):
            stack.up([part], build=False)
    info = stack.state()["cluster"]
    cluster = Cluster(kubeconfig=info["kubeconfig"], kubectl_bin=stack.binary("kubectl"))
    devstack.apply_crds(cluster.kubectl, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])
    devstack.install_monitoring_crds(cluster.kubectl)  # the four children, as in a cluster
    mlflow_uri = f"http://127.0.0.1:{stack.state()['mlflow']['port']}"
    return cluster, Kube(cluster), Registry(mlflow_uri), mlflow_uri


def fmt(x: float, unit: str = " s", digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}{unit}"


def markdown(results: list[Result], b: Bench, revision: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = ", ".join(f"{r.load:.1f}" for r in results)
    lines = [
        "## Operator at scale (issue 14)",
        "",
        f"Measured {now} on {machine()} (shared machine; 1-minute load average at the end of "
        f"each size: {loads}), operator at {revision}, local stack (`dev/stack.py`): kwok "
        f"cluster, MLflow. One `modeldeploy operator` with its default flags"
        f"{''.join(f' {a}' for a in b.operator_args)} plus the registry "
        f"webhook, {'every namespace' if b.cluster_wide else 'its namespaces named'}; "
        f"{b.models} registered models, {b.namespaces} namespaces, one replica per "
        f"ModelDeployment, the first min({b.shared}, N/2) following one shared model. One run per "
        "size. "
        "Method in `benchmarks/operator_scale_bench.py`.",
        "",
        "| N | apply → all Healthy | the children alone → all available | operator peak RSS "
        "| idle API writes per object per minute | idle operator CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.n} | {fmt(r.healthy)} | {fmt(r.floor)} | {fmt(r.rss_mib, ' MiB', 0)} "
            f"| {fmt(r.writes_per_md_min, '', 1)} | {fmt(r.cpu, ' %')} |"
        )
    lines += [
        "",
        "| N | ModelDeployments on the moved alias | webhook: first / all serving the new "
        "version | polling: first / all | restart: writes until "
        f"{b.idle:.0f} s after ready | restart: to idle |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        quiet = "not quiet" if r.restart_quiet is None else fmt(r.restart_quiet)
        quiet = "no write" if r.restart_writes == 0 else quiet
        lines.append(
            f"| {r.n} | {r.shared} | {fmt(r.webhook_first)} / {fmt(r.webhook_all)} "
            f"| {fmt(r.poll_first)} / {fmt(r.poll_all)} | {r.restart_writes} | {quiet} |"
        )
    lines += [
        "",
        "- *apply → all Healthy*: the ModelDeployments are created one after another (creating "
        f"them took {', '.join(fmt(r.applied) for r in results)}); the clock stops when a "
        "watch sees the last one Healthy on version 1.",
        "- *the children alone* (the reference, no operator running): the same children, copied "
        "as the operator made them into fresh namespaces, server-side applied by a plain client "
        f"from {FLOOR_THREADS} threads; from the first apply until a watch sees every Deployment "
        "available. What the cluster's own controllers, scheduler and kwok need for those "
        "objects on this machine: no operator can be faster here.",
        f"- *idle*: {SETTLE:.0f} s after all are Healthy, over {b.idle:.0f} s: write requests "
        "(POST/PUT/PATCH/APPLY/DELETE in the API server's `apiserver_request_total`) to "
        "ModelDeployments, their children and Events, per ModelDeployment per minute (a "
        "server-side apply that changes nothing is a request all the same); CPU: the operator "
        "process's user+system time over the same window.",
        "- *alias moves*: @champion of the shared model 1 → 2 with the registry webhook, then "
        "2 → 1 after the operator's MLflow webhook was deleted (found by the 30 s poll); from the "
        "alias write to the first / last ModelDeployment a watch sees Healthy on it.",
        f"- *restart*: SIGTERM, then a new operator with the same flags; writes counted from its "
        f"start until {b.idle:.0f} s after its /readyz; *to idle*: from its start to its last "
        f"write, when {QUIET:.0f} s without one follow (longer than the 30 s poll interval); "
        "*not quiet*: writes went on.",
        "- *peak RSS*: VmHWM of the first operator process at the end of its size.",
    ]
    for r in results:
        lines.append(
            f"- The operator's requests from its start until all were Healthy at N={r.n}: "
            f"{sum(r.ramp_requests.values()) / r.n:.1f} per ModelDeployment ("
            + ", ".join(f"{k} {v}" for k, v in sorted(r.ramp_requests.items()))
            + "; its `modeldeploy_kube_requests_total`, the leader Lease's left out)"
        )
    for r in results:
        lines.append(
            f"- Idle writes at N={r.n} by request: "
            + ", ".join(f"{k} {v}" for k, v in r.writes_by.most_common())
        )
    lines.append("")
    return "\n".join(lines)


def revision() -> str:
    import modeldeploy

    src = Path(modeldeploy.__file__).resolve().parent
    res = subprocess.run(
        # The last commit that changed the operator's code, not the checkout's newest.
        ["git", "-C", str(src), "log", "-1", "--format=%h", "--", "."],
        capture_output=True,
        text=True,
    )
    return f"`{res.stdout.strip() or '?'}` ({src.parent.parent})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--models", type=int, default=50)
    p.add_argument("--namespaces", type=int, default=20)
    p.add_argument("--shared", type=int, default=20, help="ModelDeployments on the moved alias")
    p.add_argument("--idle", type=float, default=60.0, help="seconds of the idle windows")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for all to be Healthy")
    p.add_argument("--markdown", type=Path, help="write the results section here")
    p.add_argument("--log-dir", type=Path, help="operator logs (default: the stack's logs/bench)")
    p.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="a flag for the operator beyond its defaults, as --operator-arg=--workers=16 "
        "(repeatable)",
    )
    p.add_argument("--smoke", action="store_true", help="N=4 and short windows; no figures")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.models, args.namespaces, args.shared = [4], 2, 2, 2
        args.idle, args.timeout, args.markdown = 5.0, 120.0, None
    stack = devstack.Stack()
    cluster, kube, reg, mlflow_uri = setup(stack)
    log_dir = args.log_dir or stack.logs / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        cluster,
        kube,
        reg,
        mlflow_uri,
        log_dir,
        models=args.models,
        namespaces=args.namespaces,
        shared=args.shared,
        idle=args.idle,
        cluster_wide=not args.smoke,
        poll_interval="5s" if args.smoke else None,
        timeout=args.timeout,
        settle=2.0 if args.smoke else SETTLE,
        wait_deleted=not args.smoke,
        operator_args=args.operator_arg,
    )
    results = []
    for n in args.sizes:
        results.append(bench.run(n))
    text = markdown(results, bench, revision())
    if args.smoke:
        r = results[0]
        print(
            f"smoke ok: N={r.n} Healthy {r.healthy:.1f} s, {r.writes_per_md_min:.1f} idle writes "
            f"per object per minute, webhook move {r.webhook_all:.1f} s, polling "
            f"{r.poll_all:.1f} s, {r.restart_writes} writes after restart, the children alone "
            f"{r.floor:.1f} s"
        )
        return 0
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally-blocks clean up
    sys.exit(main())
