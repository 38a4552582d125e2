"""Kubelet and Prometheus Operator stand-in for the local stack: real serving processes for the
pods kwok only pretends to run, and Prometheus wired to them the way our monitoring objects ask.

kwok schedules serving pods and reports them Running, but nothing runs. `LocalPods` watches one or
more namespaces (a ~0.5 s list loop in a background thread) and keeps local reality in step. It
composes three modules, one job each:

* **pods → processes** (dev/pod_process.py). Every pod labelled
  `app.kubernetes.io/managed-by=modeldeploy` that is Running (and not being deleted) gets
  `<venv>/bin/modeldeploy serve` with the environment the kubelet would give its `model`
  container. A pod that disappears, stops Running, is being deleted or is replaced (new uid) has
  its process stopped; a process that exits is restarted after a back-off. Logs: one file per
  process in `<stack>/logs/podrunner/` (or `log_dir`).
* **ServiceMonitor → scrape targets** (dev/monitoring_emulation.py, pure). A process that answers
  /health becomes a file-SD target (`Stack.add_scrape_target`) with the labels the Prometheus
  Operator's generated config would give it, the endpoint's `relabelings` applied with
  Prometheus' semantics, so the operator's relabeling is exercised, not re-implemented. The
  endpoint's `path` becomes `__metrics_path__`; its `interval` is ignored (the stack scrapes
  every 2 s); `metricRelabelings` are not applied (a warning says so). When the monitoring CRDs
  are not installed, every managed pod is scraped with the labels our ServiceMonitor would give.
* **PrometheusRule → rule files** (dev/rule_sync.py). Each PrometheusRule in a watched namespace
  becomes `<stack>/prometheus/rules/podrunner-<ns>-<name>.yml`, checked with promtool; Prometheus
  is reloaded only when a file changed, once per loop.

One runner per namespace: two runners on the same namespace would fight over its targets.

    with LocalPods("my-namespace") as pods:
        ep = pods.wait_for_version("fraud-detector", "2", timeout=60)[0]
        requests.post(f"{ep.url}/invocations", json={...})

An `Endpoint` carries its pod's labels, and `endpoints_for_selector` answers which processes a
Service's selector reaches: dev/traffic_routing.py routes test traffic with it the way
kube-proxy and a Gateway (HTTPRoute weights) would.

CLI (runs until Ctrl-C): python dev/podrunner.py --namespace NS [--namespace NS2 ...]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monitoring_emulation as monitoring
import pod_process
import stack as devstack
from pod_process import EnvNotReady, PodProcess
from rule_sync import RuleSync
from traffic_routing import service_selects

__all__ = ["Endpoint", "LocalPods", "PodProcess", "main"]

log = logging.getLogger("podrunner")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=modeldeploy"
MON_GROUP, MON_VERSION = "monitoring.coreos.com", "v1"


@dataclass(frozen=True)
class Endpoint:
    """A live, healthy serving process standing in for one pod; `labels` are the pod's, as
    last listed (a Service selects endpoints by them)."""

    pod: str
    version: str
    url: str
    namespace: str = ""
    modeldeployment: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


class LocalPods:
    """Runs `modeldeploy serve` for the Running serving pods of `namespaces` and wires Prometheus.

    `start()` (or `with`) begins the loop; `close()` stops every process it started and removes its
    targets and rule files."""

    def __init__(
        self,
        namespaces: str | Iterable[str],
        *,
        stack: devstack.Stack | None = None,
        kubeconfig: str | None = None,
        log_dir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        interval: float = 0.5,
        prometheus: bool | None = None,
    ) -> None:
        from kubernetes import client, config

        self.namespaces = (namespaces,) if isinstance(namespaces, str) else tuple(namespaces)
        if not self.namespaces:
            raise ValueError("LocalPods needs at least one namespace")
        self.stack = stack or devstack.Stack()
        state = self.stack.state()
        kubeconfig = kubeconfig or state.get("cluster", {}).get("kubeconfig")
        if not kubeconfig:
            raise RuntimeError("no cluster in the local stack: run `make stack-up` first")
        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.kubelet_env = pod_process.KubeletEnv(self.core)
        self.custom = client.CustomObjectsApi(api)
        self.log_dir = log_dir or self.stack.logs / "podrunner"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.work_root = self.stack.root / "podrunner"
        self.extra_env = dict(extra_env or {})
        self.interval = interval
        self.prometheus = "prometheus" in state if prometheus is None else prometheus
        self.rules_dir = self.stack.root / "prometheus" / "rules"
        self.targets_dir = self.stack.root / "prometheus" / "targets"
        self.promtool = shutil.which("promtool")
        self.monitoring_crds: bool | None = None  # known after the first loop
        self.rule_files = RuleSync(self.rules_dir, self.promtool, self._reload)
        self._procs: dict[tuple[str, str], PodProcess] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stoppers: list[threading.Thread] = []
        self._errors = 0
        self._warned: set[str] = set()  # ServiceMonitors already warned about
        self.ticks = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalPods:
        if self._thread is None:
            self._adopt_leftovers()
            self._thread = threading.Thread(target=self._run, name="podrunner", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> LocalPods:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the loop and every process; removes the targets and rule files it wrote."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
            self._changed.notify_all()
        for proc in procs:
            self._stop_process(proc, "runner closed")
        self.rule_files.close()
        for t in list(self._stoppers):
            t.join(pod_process.MAX_GRACE + 5)
        self._stoppers.clear()

    # --- queries ---------------------------------------------------------------------------
    def processes(self, modeldeployment: str | None = None) -> list[PodProcess]:
        with self._lock:
            return [
                p
                for p in self._procs.values()
                if modeldeployment is None or p.modeldeployment == modeldeployment
            ]

    def endpoints(self, modeldeployment: str, namespace: str | None = None) -> list[Endpoint]:
        """Live, healthy processes of one ModelDeployment, sorted by pod name."""
        return self._endpoints(
            lambda p: (
                p.modeldeployment == modeldeployment
                and (namespace is None or p.namespace == namespace)
            )
        )

    def endpoints_for_selector(self, namespace: str, selector: Mapping[str, str]) -> list[Endpoint]:
        """The endpoints a Service with this `spec.selector` in `namespace` would have: live,
        healthy processes whose pod labels contain every pair, sorted by pod name. An empty
        selector selects nothing, as for a Service without one."""
        return self._endpoints(
            lambda p: p.namespace == namespace and service_selects(selector, p.labels)
        )

    def _endpoints(self, wanted: Callable[[PodProcess], bool]) -> list[Endpoint]:
        with self._lock:
            return sorted(
                (
                    Endpoint(
                        p.pod, p.version, p.url, p.namespace, p.modeldeployment, dict(p.labels)
                    )
                    for p in self._procs.values()
                    if p.state == "healthy" and wanted(p)
                ),
                key=lambda e: (e.namespace, e.pod),
            )

    def wait_for_version(
        self,
        modeldeployment: str,
        version: str,
        timeout: float = 60.0,
        *,
        namespace: str | None = None,
        replicas: int = 1,
    ) -> list[Endpoint]:
        """Waits until at least `replicas` healthy processes serve `version` and none of the
        ModelDeployment's processes serves another (the rollout is complete locally)."""

        def done() -> list[Endpoint] | None:
            eps = self.endpoints(modeldeployment, namespace)
            others = [
                p
                for p in self.processes(modeldeployment)
                if p.version != version and (namespace is None or p.namespace == namespace)
            ]
            ok = [e for e in eps if e.version == version]
            return ok if len(ok) >= replicas and not others else None

        found: list[Endpoint] = self.wait(
            done, timeout, f"{modeldeployment}: {replicas} healthy process(es) of v{version} only"
        )
        return found

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Re-evaluates `check` after every loop until it is truthy; raises TimeoutError with
        what runs (and the log tail of any process that exited) otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    break
                self._changed.wait(min(left, 1.0))
        raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{self.describe()}")

    def describe(self) -> str:
        lines = []
        for p in self.processes():
            lines.append(
                f"  {p.namespace}/{p.pod} v{p.version} {p.state} port={p.port} "
                f"restarts={p.restarts} last_exit={p.last_exit} log={p.log_path}"
            )
            if p.state != "healthy":
                lines += ["    " + line for line in pod_process.tail(p.log_path, 15).splitlines()]
        return "\n".join(lines) or "  (no processes)"

    # --- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        next_list = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_list:
                    next_list = now + self.interval
                    self._sync()
                self._check_processes()
                self._errors = 0
            except Exception:
                self._errors += 1
                if self._errors in (1, 10) or self._errors % 100 == 0:
                    log.exception("podrunner loop failed (%d in a row); retrying", self._errors)
            with self._changed:
                self.ticks += 1
                self._changed.notify_all()
            starting = any(p.state == "starting" for p in self.processes())
            # Probe starting processes often so the measured start-up time is not the loop's.
            self._stop.wait(0.05 if starting else min(self.interval, max(0.0, next_list - now)))

    def _sync(self) -> None:
        pods: list[Any] = []
        monitors: list[dict[str, Any]] | None = []
        services: list[Any] = []
        rules: dict[str, dict[str, Any]] | None = {}
        for ns in self.namespaces:
            pods += self.core.list_namespaced_pod(ns, label_selector=MANAGED_SELECTOR).items
            sms = self._list_custom(ns, "servicemonitors")
            prs = self._list_custom(ns, "prometheusrules")
            if sms is None or prs is None:
                monitors = rules = None
            if monitors is not None and sms is not None:
                monitors += sms
                services += self.core.list_namespaced_service(ns).items
            if rules is not None and prs is not None:
                for pr in prs:
                    rules[f"podrunner-{ns}-{pr['metadata']['name']}"] = pr
        crds = monitors is not None
        if crds != self.monitoring_crds:
            log.info(
                "monitoring CRDs %s",
                "installed: scraping what ServiceMonitors select, PrometheusRules → rule files"
                if crds
                else "not installed: scraping every managed pod, no rule files",
            )
            self.monitoring_crds = crds
        self._sync_pods(pods)
        self._sync_targets(pods, monitors, services)
        if self.prometheus:
            self.rule_files.sync(rules or {})

    def _list_custom(self, ns: str, plural: str) -> list[dict[str, Any]] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            res: Any = self.custom.list_namespaced_custom_object(MON_GROUP, MON_VERSION, ns, plural)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return list(res.get("items", []))

    # --- pods → processes ------------------------------------------------------------------
    def _sync_pods(self, pods: list[Any]) -> None:
        wanted = {
            (p.metadata.namespace, p.metadata.name): p
            for p in pods
            if p.status
            and p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
            and p.spec.containers
        }
        with self._lock:
            gone = [
                proc
                for key, proc in self._procs.items()
                if key not in wanted or wanted[key].metadata.uid != proc.uid
            ]
            for proc in gone:
                del self._procs[proc.key]
        for proc in gone:
            pod = wanted.get(proc.key)
            self._stop_process(proc, "pod replaced" if pod else "pod gone or not Running")
        for key, pod in wanted.items():
            with self._lock:
                if key in self._procs:
                    # Labels can change on a live pod; a Service follows them.
                    self._procs[key].labels = dict(pod.metadata.labels or {})
                    continue
            try:
                env = self.kubelet_env.for_pod(pod)
            except EnvNotReady as exc:
                log.warning("%s/%s: not starting yet: %s", *key, exc)
                continue
            proc = pod_process.new_process(pod, env, self.log_dir, self.work_root)
            with self._lock:
                self._procs[key] = proc
            pod_process.spawn(proc, self.extra_env)

    def _check_processes(self) -> None:
        now = time.monotonic()
        for proc in self.processes():
            if proc.popen is None:
                if now >= proc.next_start:
                    with self._lock:
                        if self._procs.get(proc.key) is proc:
                            pod_process.spawn(proc, self.extra_env)
                continue
            if pod_process.reap(proc, now):
                self._drop_target(proc)
            else:
                pod_process.probe(proc)

    def _stop_process(self, proc: PodProcess, why: str) -> None:
        self._drop_target(proc)
        t = pod_process.stop_in_background(proc, why)
        self._stoppers = [s for s in self._stoppers if s.is_alive()] + [t]

    # --- ServiceMonitor → scrape targets ---------------------------------------------------
    def _sync_targets(
        self, pods: list[Any], monitors: list[dict[str, Any]] | None, services: list[Any]
    ) -> None:
        by_key = {(p.metadata.namespace, p.metadata.name): p for p in pods}
        for proc in self.processes():
            pod = by_key.get(proc.key)
            labels = None
            if pod is not None and proc.state == "healthy":
                labels = (
                    monitoring.default_target_labels(proc.namespace, proc.pod, proc.modeldeployment)
                    if monitors is None
                    else self._monitored_labels(pod, proc, monitors, services)
                )
            if labels is None:
                self._drop_target(proc)
            elif labels != proc.target_labels or proc.target is None:
                name = f"podrunner-{proc.namespace}-{proc.pod}"
                if self.prometheus:
                    self.stack.add_scrape_target(name, f"127.0.0.1:{proc.port}", labels)
                proc.target, proc.target_labels = name, labels
                log.info(
                    "%s/%s: scraped as %s",
                    proc.namespace,
                    proc.pod,
                    monitoring.public_labels(labels),
                )

    def _monitored_labels(
        self, pod: Any, proc: PodProcess, monitors: list[dict[str, Any]], services: list[Any]
    ) -> dict[str, str] | None:
        labels = monitoring.monitored_target_labels(
            pod, f"127.0.0.1:{proc.port}", monitors, services
        )
        for sm in monitors:
            for ep in (sm.get("spec") or {}).get("endpoints") or []:
                if ep.get("metricRelabelings") and sm["metadata"]["name"] not in self._warned:
                    self._warned.add(sm["metadata"]["name"])
                    log.warning(
                        "%s: metricRelabelings are not applied locally", sm["metadata"]["name"]
                    )
        return labels

    def _drop_target(self, proc: PodProcess) -> None:
        if proc.target is not None:
            self.stack.remove_scrape_target(proc.target)
            proc.target, proc.target_labels = None, {}

    # --- Prometheus -------------------------------------------------------------------------
    def _reload(self) -> None:
        if not self.prometheus:
            return
        try:
            self.stack.reload("prometheus")
        except (OSError, urllib.error.URLError, KeyError) as exc:
            log.error("Prometheus reload failed: %s", exc)

    def _adopt_leftovers(self) -> None:
        """Targets and rule files a crashed runner left for these namespaces: targets go (their
        processes are gone), rule files are compared so an unchanged one costs no reload."""
        for ns in self.namespaces:
            for path in self.targets_dir.glob(f"podrunner-{ns}-*.json"):
                path.unlink(missing_ok=True)
            self.rule_files.adopt(ns)

    # --- stats -----------------------------------------------------------------------------
    def startup_seconds(self) -> dict[str, float]:
        """Per pod (first start only): seconds from seen Running to answering /health."""
        out = {}
        for p in self.processes():
            s = p.startup_seconds
            if s is not None:
                out[f"{p.namespace}/{p.pod}"] = s
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run real `modeldeploy serve` processes for the serving pods kwok reports "
        "Running, scrape them with the local Prometheus and load their PrometheusRules. "
        "Runs until Ctrl-C."
    )
    parser.add_argument(
        "--namespace", "-n", action="append", required=True, help="namespace to follow (repeat)"
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default .stack/logs/podrunner)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[podrunner %(asctime)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        pods = LocalPods(args.namespace, log_dir=args.log_dir).start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("following %s; Ctrl-C stops every process it started", ", ".join(args.namespace))
    try:
        while not stop.wait(5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        pods.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
